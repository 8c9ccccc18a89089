//! JSON read so that a body means one thing.
//!
//! serde_json keeps the last of two equal keys in an object, and lets a
//! struct come as an array of its fields in declaration order, so
//! `{"count":1,"count":9}` sets 9 and `["blog","Blog",5]` creates a site.
//! A client (or a proxy, or a log reader) that reads the first key, or
//! expects an object, sees another body than tally does. No serde_json
//! setting refuses either, so the document is read twice: once to find a
//! repeated key anywhere, once into the target type through a
//! deserializer that reads structs from objects only, at every depth.

use std::collections::HashSet;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    Visitor,
};

/// Why a document was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not JSON at all.
    Syntax(String),
    /// JSON, but a repeated key, a wrong shape or type, or a missing or
    /// unknown field.
    Shape(String),
}

/// Reads `T` from `body`, refusing repeated keys and arrays in place of
/// objects.
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    let mut de = serde_json::Deserializer::from_slice(body);
    Unique
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(refusal)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(Strict(&mut de))
        .map_err(|e| Refusal::Shape(e.to_string()))?;
    de.end().map_err(refusal)?;
    Ok(value)
}

fn refusal(e: serde_json::Error) -> Refusal {
    match e.classify() {
        serde_json::error::Category::Data => Refusal::Shape(e.to_string()),
        _ => Refusal::Syntax(e.to_string()),
    }
}

/// Walks any document; fails on an object that has some key twice.
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            map.next_value_seed(Unique)?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// Wraps a deserializer, and everything it hands on (visitors, element
/// and value access, seeds), so that every struct below it is read with
/// `deserialize_map`, which takes only an object. Only that one call
/// changes; the rest passes through.
struct Strict<X>(X);

macro_rules! pass_deserialize {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Strict(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    pass_deserialize! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Strict(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Strict(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Strict(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Strict(visitor))
    }

    /// The one change: an object, never an array of the fields.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Strict(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Strict(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! pass_visit {
    ($($method:ident: $ty:ty)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Strict<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    pass_visit! {
        visit_bool: bool visit_i64: i64 visit_i128: i128 visit_u64: u64 visit_u128: u128
        visit_f64: f64 visit_char: char visit_str: &str visit_borrowed_str: &'de str
        visit_string: String visit_bytes: &[u8] visit_borrowed_bytes: &'de [u8]
        visit_byte_buf: Vec<u8>
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Strict(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Strict(map))
    }

    /// Enum payloads are not wrapped: tally's bodies have only unit
    /// variants, which are plain strings.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(data)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Strict<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Strict(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Strict<A> {
    type Error = A::Error;

    /// Keys are strings; only values can hold structs.
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Strict(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Strict<T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        slug: String,
        #[serde(default)]
        count: i64,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        sites: Vec<Entry>,
        note: Option<Entry>,
    }

    fn shape<T: DeserializeOwned + fmt::Debug>(body: &str) -> String {
        match from_slice::<T>(body.as_bytes()) {
            Err(Refusal::Shape(why)) => why,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn objects_are_read_as_usual() {
        let doc: Doc =
            from_slice(br#"{"sites":[{"slug":"a","count":2},{"slug":"b"}],"note":null}"#).unwrap();
        assert_eq!(
            doc,
            Doc {
                sites: vec![
                    Entry {
                        slug: "a".into(),
                        count: 2
                    },
                    Entry {
                        slug: "b".into(),
                        count: 0
                    }
                ],
                note: None,
            }
        );
        let with_note: Doc = from_slice(br#"{"sites":[],"note":{"slug":"n"}}"#).unwrap();
        assert_eq!(with_note.note.unwrap().slug, "n");
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        let why = shape::<Entry>(r#"{"slug":"a","count":1,"count":9}"#);
        assert!(why.contains(r#"the key "count" appears twice"#), "{why}");
        let why = shape::<Doc>(r#"{"sites":[{"slug":"a","slug":"b"}]}"#);
        assert!(why.contains(r#"the key "slug" appears twice"#), "{why}");
        // Even where the target type ignores the value.
        let why = shape::<de::IgnoredAny>(r#"[{"x":{"y":1,"y":2}}]"#);
        assert!(why.contains(r#"the key "y" appears twice"#), "{why}");
        // Escapes are compared as what they mean.
        let why = shape::<Entry>(r#"{"slug":"a","sl\u0075g":"b"}"#);
        assert!(why.contains(r#"the key "slug" appears twice"#), "{why}");
    }

    #[test]
    fn an_array_in_place_of_an_object_is_refused_at_any_depth() {
        let why = shape::<Entry>(r#"["a", 5]"#);
        assert!(
            why.contains("invalid type: sequence, expected struct Entry"),
            "{why}"
        );
        let why = shape::<Doc>(r#"{"sites":[["a", 5]]}"#);
        assert!(why.starts_with("sites[0]: invalid type: sequence"), "{why}");
        let why = shape::<Doc>(r#"{"sites":[],"note":["n"]}"#);
        assert!(why.starts_with("note: invalid type: sequence"), "{why}");
        assert!(matches!(shape::<Doc>(r#"[[]]"#), why if why.contains("expected struct Doc")));
    }

    #[test]
    fn not_json_is_a_syntax_refusal() {
        assert!(matches!(
            from_slice::<Entry>(b"{\"slug\":"),
            Err(Refusal::Syntax(_))
        ));
        assert!(matches!(
            from_slice::<Entry>(br#"{"slug":"a"} x"#),
            Err(Refusal::Syntax(_))
        ));
    }
}
