//! The strict JSON reader ([`strict_json`]) reads every document that has
//! no repeated key and no array in place of an object exactly as
//! serde_json reads it, and refuses what serde_json refuses with the same
//! words: the oracle here is serde_json itself.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::extract::strict_json;

/// `T` read by both readers: the same value, or the same error text.
fn parity<T: DeserializeOwned + PartialEq + std::fmt::Debug>(body: &str) -> Result<T, String> {
    let theirs = serde_json::from_str::<T>(body).map_err(|e| e.to_string());
    let ours = strict_json::<T>(body.as_bytes()).map_err(|e| e.message().to_owned());
    match (&theirs, &ours) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{body}"),
        (Err(why), Err(message)) => assert!(
            message.ends_with(why.as_str()),
            "{body}: {message:?} does not end with {why:?}"
        ),
        _ => panic!("{body}: serde_json says {theirs:?}, the strict reader {ours:?}"),
    }
    ours
}

#[derive(Debug, PartialEq, Deserialize)]
enum Mode {
    Keep,
    Merge,
}

#[test]
fn a_unit_variant_reads_in_both_its_forms() {
    assert_eq!(parity::<Mode>(r#""Keep""#), Ok(Mode::Keep));
    // The externally tagged form: the variant's value is read (a unit's
    // is null), not left for the end of the object to trip on.
    assert_eq!(parity::<Mode>(r#"{"Merge": null}"#), Ok(Mode::Merge));
    assert!(parity::<Mode>(r#"{"Merge": 1}"#).is_err());
}

#[test]
fn keys_are_read_in_their_human_readable_form() {
    let map = parity::<BTreeMap<IpAddr, u8>>(r#"{"127.0.0.1": 1, "::1": 2}"#).unwrap();
    assert_eq!(
        map,
        BTreeMap::from([
            ("127.0.0.1".parse().unwrap(), 1),
            ("::1".parse().unwrap(), 2)
        ])
    );
}

#[test]
fn a_key_of_the_wrong_type_says_what_was_expected() {
    let error = parity::<BTreeMap<bool, u8>>(r#"{"maybe": 1}"#).unwrap_err();
    // serde_json quotes the key from its second character on; parity
    // holds all the same, and the expectation is the key type's.
    assert!(
        error.starts_with("the body does not fit this request: invalid type: string "),
        "{error}"
    );
    assert!(
        error.ends_with(", expected a boolean at line 1 column 8"),
        "{error}"
    );
}

#[test]
fn long_lists_and_objects_read_whole() {
    let list: Vec<u32> = (0..100).collect();
    let body = serde_json::to_string(&list).unwrap();
    assert_eq!(parity::<Vec<u32>>(&body), Ok(list));
    let map: BTreeMap<String, u32> = (0..40).map(|i| (format!("k{i}"), i)).collect();
    let body = serde_json::to_string(&map).unwrap();
    assert_eq!(parity::<BTreeMap<String, u32>>(&body), Ok(map));
}
