//! A JSON document read into a typed request as Go's `encoding/json` (so dockerd) reads it:
//!
//! - `null` gives the zero value of whatever type the field has: a struct field that is `null`
//!   is as good as absent, a `null` in a map or a list is its element's zero value (`""`, `0`,
//!   `false`, an empty list or struct, no pointer);
//! - object keys match struct fields exactly or else case-insensitively, and a later key
//!   overrides an earlier one;
//! - unknown keys are ignored; a JSON array fills a fixed-size array, extra elements dropped and
//!   missing ones zero;
//! - a value of the wrong type is an error in Go's words ("cannot unmarshal string into Go
//!   struct field HostConfig.Memory of type int64").
//!
//! Where the target is itself untyped JSON (`serde_json::Value`: an update, a commit's config,
//! IPAM), the keys of its objects whose value is `null` are left out, Go's reading of those
//! objects as structs.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde_json::{Map, Number, Value};

/// A parsed document, deserialized with Go's rules.
pub struct GoDecoder(pub Value);

/// Why a document does not fit its type, as Go's decoder words it.
#[derive(Debug, Clone, PartialEq)]
pub struct GoJsonError {
    what: What,
    /// The struct fields from the document's root to the value, as Go's error names them.
    path: Vec<String>,
    /// The innermost struct holding the value.
    in_struct: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum What {
    /// Go's `UnmarshalTypeError`: the JSON value's kind and the Go type it does not fit.
    Type {
        value: String,
        go_type: String,
    },
    Other(String),
}

impl GoJsonError {
    /// The error as seen from `field` of the struct `in_struct` that holds the failing value.
    pub fn within(mut self, in_struct: &str, field: &str) -> Self {
        self.path.insert(0, field.to_string());
        self.in_struct.get_or_insert_with(|| in_struct.to_string());
        self
    }
}

impl GoJsonError {
    /// Names the document's root struct `name` in an error about one of its own fields (Go's
    /// name of a struct the Rust type only stands for).
    pub fn root_named(mut self, name: &str) -> Self {
        if self.path.len() == 1 {
            self.in_struct = Some(name.to_string());
        }
        self
    }
}

impl fmt::Display for GoJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            What::Type { value, go_type } if self.path.is_empty() => write!(
                f,
                "json: cannot unmarshal {value} into Go value of type {go_type}"
            ),
            What::Type { value, go_type } => write!(
                f,
                "json: cannot unmarshal {value} into Go struct field {}.{} of type {go_type}",
                self.in_struct.as_deref().unwrap_or(""),
                self.path.join(".")
            ),
            What::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for GoJsonError {}

impl de::Error for GoJsonError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        GoJsonError {
            what: What::Other(msg.to_string()),
            path: Vec::new(),
            in_struct: None,
        }
    }

    fn invalid_type(unexpected: Unexpected, expected: &dyn Expected) -> Self {
        let go_type = go_type(&expected.to_string());
        GoJsonError {
            what: What::Type {
                value: go_kind(&unexpected, &go_type),
                go_type,
            },
            path: Vec::new(),
            in_struct: None,
        }
    }

    /// A number out of the type's range: Go reports it as a type error with the number.
    fn invalid_value(unexpected: Unexpected, expected: &dyn Expected) -> Self {
        Self::invalid_type(unexpected, expected)
    }
}

/// The Go type a serde expectation stands for (`i64` is `int64`, `a string` is `string`).
fn go_type(expected: &str) -> String {
    let known = match expected {
        "i8" => "int8",
        "i16" => "int16",
        "i32" => "int32",
        "i64" => "int64",
        "u8" => "uint8",
        "u16" => "uint16",
        "u32" => "uint32",
        "u64" => "uint64",
        "f32" => "float32",
        "f64" => "float64",
        "a boolean" => "bool",
        "a string" | "a borrowed string" | "a character" => "string",
        "a sequence" => "slice",
        "a map" => "map",
        // Docker's `strslice.StrSlice` reports what a string would not take.
        "a string or a list of strings" => "string",
        other => {
            if let Some(name) = other.strip_prefix("struct ") {
                return name.to_string();
            }
            if other.starts_with("an array of length") || other.starts_with("a tuple") {
                return "array".to_string();
            }
            return other.to_string();
        }
    };
    known.to_string()
}

fn is_numeric(go_type: &str) -> bool {
    go_type.starts_with("int") || go_type.starts_with("uint") || go_type.starts_with("float")
}

/// What Go calls the JSON value: `string`, `number`, `bool`, `array`, `object`; a number that
/// a numeric type cannot hold is named with its value, as Go does (`number 1.5`).
fn go_kind(unexpected: &Unexpected, go_type: &str) -> String {
    let number = |text: String| {
        if is_numeric(go_type) {
            format!("number {text}")
        } else {
            "number".to_string()
        }
    };
    match unexpected {
        Unexpected::Bool(_) => "bool".into(),
        Unexpected::Unsigned(n) => number(n.to_string()),
        Unexpected::Signed(n) => number(n.to_string()),
        Unexpected::Float(n) => number(format!("{n:?}")),
        Unexpected::Str(_) | Unexpected::Char(_) => "string".into(),
        Unexpected::Seq => "array".into(),
        Unexpected::Map => "object".into(),
        Unexpected::Unit | Unexpected::Option => "null".into(),
        other => other.to_string(),
    }
}

/// What a JSON value is, for an error about it.
fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Unexpected::Unsigned(u),
            (_, Some(i)) => Unexpected::Signed(i),
            _ => Unexpected::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

fn visit_number<'de, V: Visitor<'de>>(n: Number, visitor: V) -> Result<V::Value, GoJsonError> {
    if let Some(u) = n.as_u64() {
        visitor.visit_u64(u)
    } else if let Some(i) = n.as_i64() {
        visitor.visit_i64(i)
    } else {
        visitor.visit_f64(n.as_f64().unwrap_or_default())
    }
}

fn visit_array<'de, V: Visitor<'de>>(
    items: Vec<Value>,
    visitor: V,
) -> Result<V::Value, GoJsonError> {
    let len = items.len();
    let mut elements = Elements(items.into_iter());
    let value = visitor.visit_seq(&mut elements)?;
    if elements.0.as_slice().is_empty() {
        Ok(value)
    } else {
        Err(de::Error::invalid_length(len, &"fewer elements in array"))
    }
}

/// Without the keys whose value is `null`: Go's reading of an object into a struct.
fn without_nulls(object: Map<String, Value>) -> Map<String, Value> {
    object.into_iter().filter(|(_, v)| !v.is_null()).collect()
}

/// The object's keys as the struct's `fields`: a key that is no field's exact name takes the
/// name of the field it matches case-insensitively; for two keys of one field the later wins.
fn as_fields(object: Map<String, Value>, fields: &'static [&'static str]) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in object {
        let key = if fields.contains(&key.as_str()) {
            key
        } else {
            match fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) {
                Some(field) => field.to_string(),
                None => key,
            }
        };
        out.insert(key, value);
    }
    out
}

macro_rules! zero_when_null {
    ($de:lifetime; $($method:ident => $visit:ident($($zero:expr)?)),* $(,)?) => {
        $(
            fn $method<V: Visitor<$de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
                match self.0 {
                    Value::Null => visitor.$visit($($zero)?),
                    _ => self.deserialize_any(visitor),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for GoDecoder {
    type Error = GoJsonError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => visit_number(n, visitor),
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => visit_array(items, visitor),
            Value::Object(o) => visitor.visit_map(Entries::new(without_nulls(o), None)),
        }
    }

    zero_when_null! {
        'de;
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_i128 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_u128 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_unit => visit_unit(),
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
        self.deserialize_any(visitor)
    }

    /// `null` is Go's nil pointer.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, GoJsonError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, GoJsonError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
        match self.0 {
            Value::Null => visit_array(Vec::new(), visitor),
            _ => self.deserialize_any(visitor),
        }
    }

    /// A Go array (`[2]uint`): as many elements as it holds, missing ones zero.
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, GoJsonError> {
        match self.0 {
            Value::Null => visit_array(vec![Value::Null; len], visitor),
            Value::Array(mut items) => {
                items.resize(len, Value::Null);
                visit_array(items, visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, GoJsonError> {
        self.deserialize_tuple(len, visitor)
    }

    /// A Go map: every key is there, a `null` value its element's zero value.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
        match self.0 {
            Value::Null => visitor.visit_map(Entries::new(Map::new(), None)),
            Value::Object(o) => visitor.visit_map(Entries::new(o, None)),
            _ => self.deserialize_any(visitor),
        }
    }

    /// A Go struct: only from an object (or `null`, which leaves every field zero).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GoJsonError> {
        match self.0 {
            Value::Null => visitor.visit_map(Entries::new(Map::new(), Some(name))),
            Value::Object(o) => visitor.visit_map(Entries::new(as_fields(o, fields), Some(name))),
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GoJsonError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GoJsonError> {
        visitor.visit_unit()
    }
}

struct Elements(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Elements {
    type Error = GoJsonError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, GoJsonError> {
        match self.0.next() {
            Some(value) => seed.deserialize(GoDecoder(value)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// An object's entries; for a struct (`in_struct`), an error in a field's value names the field.
struct Entries {
    entries: serde_json::map::IntoIter,
    in_struct: Option<&'static str>,
    next: Option<(String, Value)>,
}

impl Entries {
    fn new(object: Map<String, Value>, in_struct: Option<&'static str>) -> Entries {
        Entries {
            entries: object.into_iter(),
            in_struct,
            next: None,
        }
    }
}

impl<'de> MapAccess<'de> for Entries {
    type Error = GoJsonError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, GoJsonError> {
        match self.entries.next() {
            Some((key, value)) => {
                let name: de::value::StringDeserializer<GoJsonError> =
                    key.clone().into_deserializer();
                let k = seed.deserialize(name)?;
                self.next = Some((key, value));
                Ok(Some(k))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, GoJsonError> {
        let (key, value) = self
            .next
            .take()
            .ok_or_else(|| <GoJsonError as de::Error>::custom("a value without its key"))?;
        seed.deserialize(GoDecoder(value))
            .map_err(|e| match self.in_struct {
                Some(name) => e.within(name, &key),
                None => e,
            })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
