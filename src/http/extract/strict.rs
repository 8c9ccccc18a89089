//! JSON read so that a document means one thing.
//!
//! serde_json keeps the last of two equal keys in an object, and lets a
//! struct come as an array of its fields in declaration order, so
//! `{"count":1,"count":9}` sets 9 and `["blog","Blog",5]` creates a site.
//! A client (or a proxy, or a log reader) that reads the first key, or
//! expects an object, sees another document than tally does. No serde_json
//! setting refuses either, so every JSON document tally reads (a request
//! body, an import as it streams in) goes through a deserializer that
//! reads structs from objects only, at every depth, and refuses a key that
//! its object already holds as the key is read: one pass, whatever reads
//! the values, so a document too large to hold is checked as it comes.

use std::collections::HashSet;
use std::fmt;
use std::io;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
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
/// objects. A refusal of the shape names where it stands (`sites[0]: ...`).
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    let mut de = serde_json::Deserializer::from_slice(body);
    // A data error names the path to its value; any other (syntax, an
    // early end, trailing characters after the document) is not JSON.
    let value = serde_path_to_error::deserialize(Strict(&mut de)).map_err(|e| {
        if e.inner().is_data() {
            Refusal::Shape(e.to_string())
        } else {
            Refusal::Syntax(e.into_inner().to_string())
        }
    })?;
    de.end().map_err(|e| Refusal::Syntax(e.to_string()))?;
    Ok(value)
}

/// Reads a document with `seed` as it streams in from `reader`, under the
/// rules of [`from_slice`]: for a document read by hand-written seeds,
/// which check each value as it comes and name it in their own errors.
pub fn from_reader<'de, R: io::Read, S: DeserializeSeed<'de>>(
    reader: R,
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let value = seed.deserialize(Strict(&mut de))?;
    de.end()?;
    Ok(value)
}

/// Wraps a deserializer, and everything it hands on (visitors, element
/// and value access, seeds), so that every struct below it is read with
/// `deserialize_map`, which takes only an object, and every object's keys
/// are seen by [`Object`]. A value the target ignores is walked all the
/// same (`deserialize_any`), so that a repeated key inside it is found
/// too. The rest passes through.
struct Strict<X>(X);

impl<X> Strict<X> {
    fn split<V>(self, visitor: V) -> (X, Strict<V>) {
        (self.0, Strict(visitor))
    }
}

/// A key of an object, or anything its reader hands on (its visitor, the
/// deserializer of an `Option` or newtype key, an enum key's variant), on
/// its way to [`Keys::note`].
struct Key<'k, X> {
    inner: X,
    keys: &'k mut Keys,
}

impl<'k, X> Key<'k, X> {
    fn split<V>(self, visitor: V) -> (X, Key<'k, V>) {
        let keys = self.keys;
        (
            self.inner,
            Key {
                inner: visitor,
                keys,
            },
        )
    }
}

/// Forwards `deserialize_*` calls to the wrapped deserializer, with the
/// visitor wrapped by `$split`.
macro_rules! pass_deserialize {
    ($split:ident: $($method:ident($($arg:ident: $ty:ty),*))*) => {$(
        fn $method<V: Visitor<'de>>(
            self,
            $($arg: $ty,)*
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            let (inner, visitor) = self.$split(visitor);
            inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    pass_deserialize! { split:
        deserialize_any() deserialize_bool() deserialize_i8() deserialize_i16()
        deserialize_i32() deserialize_i64() deserialize_i128() deserialize_u8()
        deserialize_u16() deserialize_u32() deserialize_u64() deserialize_u128()
        deserialize_f32() deserialize_f64() deserialize_char() deserialize_str()
        deserialize_string() deserialize_bytes() deserialize_byte_buf()
        deserialize_option() deserialize_unit() deserialize_seq() deserialize_map()
        deserialize_identifier()
        deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str)
        deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
    }

    /// An object, never an array of the fields.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Strict(visitor))
    }

    /// Walked, not skipped: a repeated key is refused even where the
    /// target ignores the value that holds it.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(Strict(visitor))
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
        self.0.visit_map(Object {
            map,
            keys: Keys::default(),
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Strict(data))
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Strict<A> {
    type Error = A::Error;
    type Variant = Strict<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(seed)?;
        Ok((value, Strict(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Strict<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.0.newtype_variant_seed(Strict(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Strict(visitor))
    }

    /// Read as a newtype whose value is the struct, so that it too is
    /// read from an object only.
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0
            .newtype_variant_seed(StructVariant { fields, visitor })
    }
}

/// The fields of a struct variant, read as a struct.
struct StructVariant<V> {
    fields: &'static [&'static str],
    visitor: V,
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for StructVariant<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        Strict(d).deserialize_struct("", self.fields, self.visitor)
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

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Strict<T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

/// An object being read: its keys are noted as they are read, and one it
/// already holds is refused.
struct Object<A> {
    map: A,
    keys: Keys,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Object<A> {
    type Error = A::Error;

    /// A repeated key is not handed on: the target never sees its object
    /// give a key twice. Its value is read past before the refusal, so
    /// that the refusal stands where that value ends, as a refused value's
    /// own does.
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let key = self.map.next_key_seed(Key {
            inner: seed,
            keys: &mut self.keys,
        })?;
        match self.keys.repeated.take() {
            None => Ok(key),
            Some(name) => {
                self.map.next_value::<de::IgnoredAny>()?;
                Err(de::Error::custom(format_args!("duplicate field `{name}`")))
            }
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(Strict(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// The keys of one object read so far, as what they mean (escapes
/// decoded). The few that an object usually holds are kept end to end in
/// one buffer and compared in turn, so that a small object costs at most
/// an allocation or two; past [`Keys::FEW`] they go into a set, so that an
/// object of a million keys is not compared a million times over.
#[derive(Default)]
struct Keys {
    text: Vec<u8>,
    ends: [usize; Keys::FEW],
    few: usize,
    many: Option<HashSet<Box<[u8]>>>,
    /// A key the object already held, noted by the key's reader for
    /// [`Object`] to refuse.
    repeated: Option<String>,
}

impl Keys {
    const FEW: usize = 16;

    fn note(&mut self, key: impl AsRef<[u8]>) {
        let key = key.as_ref();
        if self.holds(key) {
            self.repeated = Some(String::from_utf8_lossy(key).into_owned());
        } else if let Some(many) = &mut self.many {
            many.insert(key.into());
        } else if self.few == Self::FEW {
            let mut many: HashSet<Box<[u8]>> = self.held().map(Into::into).collect();
            many.insert(key.into());
            self.many = Some(many);
        } else {
            self.text.extend_from_slice(key);
            self.ends[self.few] = self.text.len();
            self.few += 1;
        }
    }

    /// A key read as another type than a string (a number, `true`), as
    /// serde_json reads the keys of a map with such keys.
    fn note_shown(&mut self, key: impl fmt::Display) {
        self.note(key.to_string());
    }

    fn holds(&self, key: &[u8]) -> bool {
        match &self.many {
            Some(many) => many.contains(key),
            None => self.held().any(|held| held == key),
        }
    }

    fn held(&self) -> impl Iterator<Item = &[u8]> {
        let ends = &self.ends[..self.few];
        let starts = std::iter::once(0).chain(ends.iter().copied());
        starts.zip(ends).map(|(start, &end)| &self.text[start..end])
    }
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Key<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        self.inner.deserialize(Key {
            inner: d,
            keys: self.keys,
        })
    }
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Key<'_, D> {
    type Error = D::Error;

    pass_deserialize! { split:
        deserialize_any() deserialize_bool() deserialize_i8() deserialize_i16()
        deserialize_i32() deserialize_i64() deserialize_i128() deserialize_u8()
        deserialize_u16() deserialize_u32() deserialize_u64() deserialize_u128()
        deserialize_f32() deserialize_f64() deserialize_char() deserialize_str()
        deserialize_string() deserialize_bytes() deserialize_byte_buf()
        deserialize_option() deserialize_unit() deserialize_seq() deserialize_map()
        deserialize_identifier() deserialize_ignored_any()
        deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str)
        deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_struct(name: &'static str, fields: &'static [&'static str])
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Notes the key as the visitor receives it, then hands it on.
macro_rules! note_visit {
    ($note:ident: $($method:ident: $ty:ty)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.keys.$note(&v);
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Key<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    note_visit! { note:
        visit_str: &str visit_borrowed_str: &'de str visit_string: String
        visit_bytes: &[u8] visit_borrowed_bytes: &'de [u8] visit_byte_buf: Vec<u8>
    }

    note_visit! { note_shown:
        visit_bool: bool visit_i64: i64 visit_i128: i128 visit_u64: u64 visit_u128: u128
        visit_f64: f64 visit_char: char
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let (d, visitor) = (
            Key {
                inner: d,
                keys: self.keys,
            },
            self.inner,
        );
        visitor.visit_some(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let (d, visitor) = (
            Key {
                inner: d,
                keys: self.keys,
            },
            self.inner,
        );
        visitor.visit_newtype_struct(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let (data, visitor) = (
            Key {
                inner: data,
                keys: self.keys,
            },
            self.inner,
        );
        visitor.visit_enum(data)
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Key<'_, A> {
    type Error = A::Error;
    type Variant = A::Variant;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, A::Variant), A::Error> {
        self.inner.variant_seed(Key {
            inner: seed,
            keys: self.keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

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
        assert!(why.contains("duplicate field `count`"), "{why}");
        let why = shape::<Doc>(r#"{"sites":[{"slug":"a","slug":"b"}]}"#);
        assert!(why.contains("duplicate field `slug`"), "{why}");
        // Even where the target type ignores the value.
        let why = shape::<de::IgnoredAny>(r#"[{"x":{"y":1,"y":2}}]"#);
        assert!(why.contains("duplicate field `y`"), "{why}");
        // Escapes are compared as what they mean.
        let why = shape::<Entry>(r#"{"slug":"a","sl\u0075g":"b"}"#);
        assert!(why.contains("duplicate field `slug`"), "{why}");
    }

    #[test]
    fn a_key_given_twice_is_refused_among_many_and_in_maps_of_numbers() {
        let keys: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let body = |extra: &str| format!("{{{}{extra}}}", keys.join(","));
        let map = from_slice::<HashMap<String, i64>>(body("").as_bytes()).unwrap();
        assert_eq!(map.len(), 40);
        for repeated in ["k0", "k15", "k16", "k39"] {
            let why = shape::<HashMap<String, i64>>(&body(&format!(r#","{repeated}":1"#)));
            assert!(
                why.contains(&format!("duplicate field `{repeated}`")),
                "{why}"
            );
        }
        let why = shape::<BTreeMap<u32, i64>>(r#"{"1":1,"2":2,"1":3}"#);
        assert!(why.contains("duplicate field `1`"), "{why}");
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

    #[derive(Debug, PartialEq, Deserialize)]
    enum Tagged {
        Plain,
        Boxed(Entry),
        Fields { slug: String },
    }

    #[test]
    fn enum_payloads_are_read_under_the_same_rules() {
        assert_eq!(from_slice(br#""Plain""#), Ok(Tagged::Plain));
        assert_eq!(
            from_slice(br#"{"Fields":{"slug":"a"}}"#),
            Ok(Tagged::Fields { slug: "a".into() })
        );
        for body in [
            r#"{"Boxed":{"slug":"a","slug":"b"}}"#,
            r#"{"Fields":{"slug":"a","slug":"b"}}"#,
        ] {
            let why = shape::<Tagged>(body);
            assert!(why.contains("duplicate field `slug`"), "{why}");
        }
        for body in [r#"{"Boxed":["a",1]}"#, r#"{"Fields":["a"]}"#] {
            let why = shape::<Tagged>(body);
            assert!(why.contains("invalid type: sequence"), "{why}");
        }
    }

    /// Types that read another form from a deserializer that is not
    /// human-readable (an address as bytes) read JSON's text through it.
    #[test]
    fn values_are_read_in_their_human_readable_form() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Peer {
            ip: std::net::IpAddr,
            at: std::net::SocketAddr,
        }
        let peer: Peer = from_slice(br#"{"ip":"192.0.2.7","at":"[2001:db8::1]:443"}"#).unwrap();
        assert_eq!(
            peer,
            Peer {
                ip: "192.0.2.7".parse().unwrap(),
                at: "[2001:db8::1]:443".parse().unwrap(),
            }
        );
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
        assert_eq!(
            from_slice::<Entry>(b"{\"slug\":\"a\"}\n}"),
            Err(Refusal::Syntax(
                "trailing characters at line 2 column 1".into()
            ))
        );
    }
}
