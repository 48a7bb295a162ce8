//! safetensors header facts: the 8-byte length, its bounds, and the header read as strict JSON
//! (RFC 8259, as the official loader's serde_json reads it) by a bounded hand-written parser that
//! records the keys repeated in any object and keeps a repeated key's last value (Python's `dict`:
//! at the position of its first occurrence). Tensor data is never read.
//!
//! The twin of `mlguard/engine/pure/safetensors.py`: the same errors at the same byte offsets with
//! the same detail texts (`tests/test_format_kernels.py` checks both against each other). The facts
//! are documented at `mlguard.engine.safetensors_header`.
//!
//! Numbers follow serde_json: an integer in [-2**63, 2**64) is an integer, any other number a
//! float, and a float that overflows is an error ("number out of range"). Lone UTF-16 surrogate
//! escapes are errors. Bounds: nesting depth, JSON values in the header, top-level entries.

use std::borrow::Cow;
use std::collections::hash_map::{Entry, HashMap};

/// The official loader's cap on the header length.
pub const MAX_HEADER: u64 = 100_000_000;
/// Distinct top-level keys (tensors and `__metadata__`).
pub const MAX_TENSORS: usize = 1_000_000;
/// JSON values in the whole header.
pub const MAX_VALUES: u64 = 1 << 24;
/// Nested objects and arrays (the header object is at depth 1).
pub const MAX_DEPTH: usize = 64;
pub const METADATA: &str = "__metadata__";
/// Members an object holds before it indexes its keys (small objects are searched linearly).
const INDEX_FROM: usize = 16;

/// A JSON value; strings without escapes borrow from the header.
#[derive(Clone, Debug, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// Always in [-2**63, 2**64).
    Int(i128),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// An object's members in the order their keys first appear (keys are unique: a repeated key
/// takes the later value).
pub type Object<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

impl Json<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Int(_) | Json::Float(_) => "number",
            Json::Str(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
}

/// The value of `key` in `object`.
pub fn get<'j, 'a>(object: &'j Object<'a>, key: &str) -> Option<&'j Json<'a>> {
    object.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Where the parser puts an object's members.
trait Members<'a> {
    /// Add a member; a repeated key's value replaces the earlier one, and the key is given back.
    fn insert(&mut self, key: Cow<'a, str>, value: Json<'a>) -> Result<Option<Cow<'a, str>>, Stop>;
}

/// An object being parsed, with an index of its keys once it has `INDEX_FROM` members.
#[derive(Default)]
struct Building<'a> {
    members: Object<'a>,
    index: HashMap<Cow<'a, str>, usize>,
}

impl Building<'_> {
    fn find(&self, key: &str) -> Option<usize> {
        if self.index.is_empty() {
            self.members.iter().position(|(k, _)| k == key)
        } else {
            self.index.get(key).copied()
        }
    }
}

impl<'a> Members<'a> for Building<'a> {
    fn insert(&mut self, key: Cow<'a, str>, value: Json<'a>) -> Result<Option<Cow<'a, str>>, Stop> {
        if let Some(slot) = self.find(&key).and_then(|i| self.members.get_mut(i)) {
            slot.1 = value;
            return Ok(Some(key));
        }
        if self.members.len() + 1 >= INDEX_FROM {
            if self.index.is_empty() {
                self.index = self.members.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
            }
            self.index.insert(key.clone(), self.members.len());
        }
        self.members.push((key, value));
        Ok(None)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<'a> {
    pub name: Cow<'a, str>,
    pub dtype: Option<Cow<'a, str>>,
    pub shape: Option<Vec<i128>>,
    pub begin: Option<i128>,
    pub end: Option<i128>,
    pub problem: Option<String>,
}

impl<'a> Tensor<'a> {
    fn from_entry(name: Cow<'a, str>, entry: Json<'a>) -> Tensor<'a> {
        let mut t = Tensor { name, dtype: None, shape: None, begin: None, end: None, problem: None };
        let Json::Object(entry) = entry else {
            t.problem = Some("entry is not an object".into());
            return t;
        };
        let mut unknown: Vec<&str> = entry
            .iter()
            .map(|(k, _)| k.as_ref())
            .filter(|k| !matches!(*k, "dtype" | "shape" | "data_offsets"))
            .collect();
        unknown.sort_unstable();
        if let Some(Json::Str(dtype)) = get(&entry, "dtype") {
            t.dtype = Some(dtype.clone());
        }
        if let Some(Json::Array(dims)) = get(&entry, "shape") {
            t.shape = dims.iter().map(|d| if let Json::Int(d) = d { Some(*d) } else { None }).collect();
        }
        if let Some(Json::Array(offsets)) = get(&entry, "data_offsets") {
            if let [Json::Int(begin), Json::Int(end)] = offsets.as_slice() {
                (t.begin, t.end) = (Some(*begin), Some(*end));
            }
        }
        let absent = [("dtype", t.dtype.is_none()), ("shape", t.shape.is_none()), ("data_offsets", t.begin.is_none())];
        let missing: Vec<&str> = absent
            .into_iter()
            .filter_map(|(key, absent)| absent.then_some(key))
            .collect();
        t.problem = if !missing.is_empty() {
            Some(format!("missing or malformed {}", missing.join(", ")))
        } else if t.shape.iter().flatten().any(|d| *d < 0) {
            Some("negative dimension".into())
        } else if t.begin.is_some_and(|b| b < 0) || t.end.is_some_and(|e| e < 0) {
            Some("negative offset".into())
        } else if !unknown.is_empty() {
            Some(format!("unknown keys {}", unknown.join(", ")))
        } else {
            None
        };
        t
    }
}

/// The header object, consumed entry by entry.
#[derive(Default)]
struct Header<'a> {
    index: HashMap<Cow<'a, str>, usize>,
    tensors: Vec<Tensor<'a>>,
    metadata: Option<Object<'a>>,
}

impl<'a> Members<'a> for Header<'a> {
    fn insert(&mut self, key: Cow<'a, str>, value: Json<'a>) -> Result<Option<Cow<'a, str>>, Stop> {
        let full = self.index.len() + usize::from(self.metadata.is_some()) >= MAX_TENSORS;
        if key == METADATA {
            let repeated = self.metadata.is_some();
            if full && !repeated {
                return Err(Stop::TooManyEntries);
            }
            self.metadata = Some(match value {
                Json::Object(object) => object,
                other => vec![(Cow::Borrowed(""), other)],
            });
            return Ok(repeated.then_some(key));
        }
        let next = self.tensors.len();
        match self.index.entry(key) {
            Entry::Occupied(e) => {
                let key = e.key().clone();
                if let Some(slot) = self.tensors.get_mut(*e.get()) {
                    *slot = Tensor::from_entry(key.clone(), value);
                }
                Ok(Some(key))
            }
            Entry::Vacant(_) if full => Err(Stop::TooManyEntries),
            Entry::Vacant(e) => {
                let name = e.key().clone();
                e.insert(next);
                self.tensors.push(Tensor::from_entry(name, value));
                Ok(None)
            }
        }
    }
}

/// Why parsing stopped (offsets in the header text).
#[derive(Debug, PartialEq)]
enum Stop {
    Syntax(usize, &'static str),
    TooDeep(usize),
    TooManyValues,
    TooManyEntries,
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    values: u64,
    duplicates: Vec<Cow<'a, str>>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// A syntax error at `at` ("unexpected end" when that is the end of the header).
    fn fail<T>(&self, at: usize, reason: &'static str) -> Result<T, Stop> {
        Err(Stop::Syntax(at, if at >= self.text.len() { "unexpected end" } else { reason }))
    }

    /// `text[a..b]`; the parser only cuts at ASCII bytes, which are character boundaries.
    fn slice(&self, a: usize, b: usize) -> Result<&'a str, Stop> {
        self.text.get(a..b).ok_or(Stop::Syntax(a, "not UTF-8"))
    }

    fn count(&mut self) -> Result<(), Stop> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(Stop::TooManyValues);
        }
        Ok(())
    }

    /// The whole header: its top-level object (members into a `Header`), or the kind of JSON value
    /// it is instead.
    fn document(&mut self) -> Result<Result<Header<'a>, &'static str>, Stop> {
        self.skip_ws();
        let top = if self.peek() == Some(b'{') {
            self.count()?;
            let mut header = Header::default();
            self.object(&mut header, 1)?;
            Ok(header)
        } else {
            Err(self.value(0)?.kind())
        };
        self.skip_ws();
        if self.pos < self.text.len() {
            return self.fail(self.pos, "trailing characters");
        }
        Ok(top)
    }

    /// The value after the cursor (and whitespace), inside `depth` objects and arrays.
    fn value(&mut self, depth: usize) -> Result<Json<'a>, Stop> {
        self.skip_ws();
        let Some(c) = self.peek() else { return self.fail(self.pos, "expected a value") };
        self.count()?;
        match c {
            b'{' | b'[' if depth >= MAX_DEPTH => Err(Stop::TooDeep(self.pos)),
            b'{' => {
                let mut object = Building::default();
                self.object(&mut object, depth + 1)?;
                Ok(Json::Object(object.members))
            }
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Json::Str),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Null),
            _ => self.fail(self.pos, "expected a value"),
        }
    }

    /// The object at the cursor (`{`), at `depth`.
    fn object<M: Members<'a>>(&mut self, into: &mut M, depth: usize) -> Result<(), Stop> {
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return self.fail(self.pos, "expected a string key");
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return self.fail(self.pos, "expected ':'");
            }
            self.pos += 1;
            let value = self.value(depth)?;
            if let Some(repeated) = into.insert(key, value)? {
                self.duplicates.push(repeated);
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.fail(self.pos, "expected ',' or '}'"),
            }
        }
    }

    /// The array at the cursor (`[`), at `depth`.
    fn array(&mut self, depth: usize) -> Result<Json<'a>, Stop> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return self.fail(self.pos, "expected ',' or ']'"),
            }
        }
    }

    /// The string at the cursor (`"`), borrowed when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, Stop> {
        self.pos += 1;
        let mut out = Cow::Borrowed("");
        loop {
            let start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            let run = self.slice(start, self.pos)?;
            if out.is_empty() {
                out = Cow::Borrowed(run);
            } else {
                out.to_mut().push_str(run);
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let c = self.escape()?;
                    out.to_mut().push(c);
                }
                _ => return self.fail(self.pos, "control character in string"),
            }
        }
    }

    /// The escape at the cursor (`\`); a surrogate pair is one escape.
    fn escape(&mut self) -> Result<char, Stop> {
        let at = self.pos;
        let (c, length) = match self.text.as_bytes().get(at + 1) {
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'/') => ('/', 2),
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{c}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'u') => {
                let Some(mut code) = self.hex4(at + 2) else { return self.fail(at, "invalid escape") };
                let mut length = 6;
                if (0xD800..0xDC00).contains(&code) && self.text.as_bytes().get(at + 6..at + 8) == Some(b"\\u") {
                    if let Some(low @ 0xDC00..=0xDFFF) = self.hex4(at + 8) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                        length = 12;
                    }
                }
                let Some(c) = char::from_u32(code) else { return self.fail(at, "lone surrogate") };
                (c, length)
            }
            _ => return self.fail(at, "invalid escape"),
        };
        self.pos = at + length;
        Ok(c)
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.text.as_bytes().get(at..at.checked_add(4)?)?;
        digits.iter().try_fold(0, |acc, &d| Some(acc << 4 | char::from(d).to_digit(16)?))
    }

    /// The number at the cursor (`-` or a digit).
    fn number(&mut self) -> Result<Json<'a>, Stop> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return self.fail(self.pos, "invalid number"),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
            integer = false;
        }
        let text = self.slice(start, self.pos)?;
        if integer {
            if let Ok(v) = text.parse::<i64>() {
                return Ok(Json::Int(v.into()));
            }
            if let Ok(v) = text.parse::<u64>() {
                return Ok(Json::Int(v.into()));
            }
        }
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Json::Float(v)),
            _ => self.fail(start, "number out of range"),
        }
    }

    /// One or more digits.
    fn digits(&mut self) -> Result<(), Stop> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return self.fail(self.pos, "invalid number");
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static str, value: Json<'a>) -> Result<Json<'a>, Stop> {
        if self.text.as_bytes().get(self.pos..self.pos + word.len()) != Some(word.as_bytes()) {
            return self.fail(self.pos, "invalid literal");
        }
        self.pos += word.len();
        Ok(value)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts<'a> {
    pub header_length: Option<u64>,
    pub error: Option<&'static str>,
    pub detail: Option<String>,
    pub duplicates: Vec<Cow<'a, str>>,
    /// `__metadata__`: its object, or `{"": value}` when it is not an object.
    pub metadata: Option<Object<'a>>,
    pub tensors: Vec<Tensor<'a>>,
}

/// `n` with a comma every three digits, as Python's `f"{n:,}"`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Facts about the safetensors header at the start of `data` (the file, or at least its first
/// 8 + header length bytes); `file_size` defaults to `data.len()`.
pub fn header_facts(data: &[u8], file_size: Option<u64>) -> Facts<'_> {
    let size = file_size.unwrap_or(data.len() as u64);
    let fail = |header_length, error, detail| Facts {
        header_length,
        error: Some(error),
        detail: Some(detail),
        ..Facts::default()
    };
    let (Some(length), true) = (data.first_chunk::<8>(), size >= 8) else {
        let have = size.min(data.len() as u64);
        return fail(None, "short", format!("{have} bytes, fewer than the 8 of the length field"));
    };
    let n = u64::from_le_bytes(*length);
    if n > MAX_HEADER {
        let detail = format!("header length {} over the loader's cap of {}", thousands(n), thousands(MAX_HEADER));
        return fail(Some(n), "too-large", detail);
    }
    if n > size - 8 {
        let detail = format!("header length {} but only {} bytes follow", thousands(n), thousands(size - 8));
        return fail(Some(n), "beyond-file", detail);
    }
    let raw = data.get(8..).unwrap_or_default();
    let raw = raw.get(..n as usize).unwrap_or(raw);
    let text = match std::str::from_utf8(raw) {
        Ok(text) => text,
        Err(e) => return fail(Some(n), "not-utf8", format!("header is not UTF-8 at byte {}", 8 + e.valid_up_to())),
    };
    let mut parser = Parser { text, pos: 0, values: 0, duplicates: Vec::new() };
    match parser.document() {
        Ok(Ok(header)) => Facts {
            header_length: Some(n),
            duplicates: parser.duplicates,
            metadata: header.metadata,
            tensors: header.tensors,
            ..Facts::default()
        },
        Ok(Err(kind)) => fail(Some(n), "not-object", format!("header is a JSON {kind}, not an object")),
        Err(Stop::Syntax(at, reason)) => {
            fail(Some(n), "not-json", format!("header is not strict JSON at byte {}: {reason}", 8 + at))
        }
        Err(Stop::TooDeep(at)) => {
            fail(Some(n), "too-deep", format!("header nested deeper than {MAX_DEPTH} at byte {}", 8 + at))
        }
        Err(Stop::TooManyValues) => {
            fail(Some(n), "too-many", format!("more than {} JSON values", thousands(MAX_VALUES)))
        }
        Err(Stop::TooManyEntries) => {
            fail(Some(n), "too-many", format!("more than {} entries", thousands(MAX_TENSORS as u64)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out
    }

    fn facts(header: &str) -> Facts<'static> {
        header_facts(Box::leak(file(header).into_boxed_slice()), None)
    }

    fn error(header: &str) -> (&'static str, String) {
        let f = facts(header);
        (f.error.unwrap_or("none"), f.detail.unwrap_or_default())
    }

    #[test]
    fn a_valid_header() {
        let header = r#" {"__metadata__": {"format": "pt"}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
            "a": {"dtype": "U8", "shape": [], "data_offsets": [0, 8], "x": 1}} "#;
        let f = facts(header);
        assert_eq!((f.error, f.header_length), (None, Some(header.len() as u64)));
        assert_eq!(f.metadata, Some(vec![("format".into(), Json::Str("pt".into()))]));
        let names: Vec<_> = f.tensors.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, ["b", "a"]);
        let b = &f.tensors[0];
        assert_eq!((b.dtype.as_deref(), b.shape.as_deref(), b.begin, b.end), (Some("F32"), Some(&[2][..]), Some(8), Some(16)));
        assert_eq!(b.problem, None);
        assert_eq!(f.tensors[1].problem.as_deref(), Some("unknown keys x"));
    }

    #[test]
    fn framing_errors() {
        let detail = |data: &[u8], size| header_facts(data, size).detail.unwrap_or_default();
        assert_eq!(detail(b"\x01\x02", None), "2 bytes, fewer than the 8 of the length field");
        let mut big = 200_000_000u64.to_le_bytes().to_vec();
        big.extend(b"{}");
        assert_eq!(detail(&big, None), "header length 200,000,000 over the loader's cap of 100,000,000");
        let mut beyond = 10u64.to_le_bytes().to_vec();
        beyond.extend(b"{}");
        assert_eq!(detail(&beyond, None), "header length 10 but only 2 bytes follow");
        assert_eq!(header_facts(&beyond, Some(18)).error, None, "file_size counts, data is cut to what it holds");
        let mut bad = 4u64.to_le_bytes().to_vec();
        bad.extend(b"{\"\xff}");
        assert_eq!(header_facts(&bad, None).error, Some("not-utf8"));
        assert_eq!(detail(&bad, None), "header is not UTF-8 at byte 10");
    }

    #[test]
    fn syntax_errors_name_the_byte_and_the_reason() {
        let cases = [
            ("", "unexpected end", 8),
            ("{\"a\": NaN}", "expected a value", 14),
            ("{\"a\": -Infinity}", "invalid number", 15),
            ("{\"a\": 1,}", "expected a string key", 16),
            ("{\"a\" 1}", "expected ':'", 13),
            ("[1 2]", "expected ',' or ']'", 11),
            ("{\"a\": 01}", "expected ',' or '}'", 15),
            ("{\"a\": 1.}", "invalid number", 16),
            ("{\"a\": 1e400}", "number out of range", 14),
            ("{\"a\": tru}", "invalid literal", 14),
            ("{\"a\": \"\t\"}", "control character in string", 15),
            ("{\"a\": \"\\x\"}", "invalid escape", 15),
            ("{\"a\": \"\\u12g4\"}", "invalid escape", 15),
            ("{\"a\": \"\\ud800\"}", "lone surrogate", 15),
            ("{\"a\": \"\\udc00\\ud800\"}", "lone surrogate", 15),
            ("{\"\u{e9}\": \"\\ud800\\u0041\"}", "lone surrogate", 16),
            ("{} x", "trailing characters", 11),
            ("{\"a\": \"x", "unexpected end", 16),
        ];
        for (header, reason, at) in cases {
            let expected = format!("header is not strict JSON at byte {at}: {reason}");
            assert_eq!(error(header), ("not-json", expected), "{header}");
        }
    }

    #[test]
    fn values_follow_serde_json() {
        let f = facts(
            r#"{"__metadata__": {"i": -9223372036854775808, "u": 18446744073709551615, "big": 18446744073709551616,
                "f": 1.5e3, "z": -0, "s": "\ud83d\ude00\u00e9\n", "l": [true, null, {}]}}"#,
        );
        let meta = f.metadata.unwrap_or_default();
        let value = |key: &str| get(&meta, key).cloned();
        assert_eq!(value("i"), Some(Json::Int(-(1 << 63))));
        assert_eq!(value("u"), Some(Json::Int(u64::MAX.into())));
        assert_eq!(value("big"), Some(Json::Float(18446744073709551616.0)));
        assert_eq!(value("f"), Some(Json::Float(1500.0)));
        assert_eq!(value("z"), Some(Json::Int(0)));
        assert_eq!(value("s"), Some(Json::Str("\u{1f600}\u{e9}\n".into())));
        assert_eq!(value("l"), Some(Json::Array(vec![Json::Bool(true), Json::Null, Json::Object(vec![])])));
        let problem = |header: &str| facts(header).tensors.first().and_then(|t| t.problem.clone());
        let huge = r#"{"w": {"dtype": "F32", "shape": [18446744073709551616], "data_offsets": [0, 4]}}"#;
        assert_eq!(problem(huge).as_deref(), Some("missing or malformed shape"));
        let negative = r#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, -1]}}"#;
        assert_eq!(problem(negative).as_deref(), Some("negative offset"));
        assert_eq!(problem(r#"{"w": 5}"#).as_deref(), Some("entry is not an object"));
        assert_eq!(facts(r#"{"__metadata__": 5}"#).metadata, Some(vec![("".into(), Json::Int(5))]));
    }

    #[test]
    fn repeated_keys_at_every_depth_keep_the_first_position_and_the_last_value() {
        let mut header = String::from("{\"__metadata__\": {");
        for i in 0..40 {
            header.push_str(&format!("\"k{}\": {i}, ", i % 20));
        }
        header.push_str("\"x\": {\"y\": 1, \"y\": 2}}, \"t\": 1, \"t\": {\"dtype\": \"F32\"}}");
        let f = facts(&header);
        assert_eq!(f.error, None);
        assert_eq!(f.duplicates.len(), 22);
        assert_eq!(f.duplicates[..2], ["k0", "k1"]);
        assert_eq!(f.duplicates[20..], ["y", "t"], "in order of the repeated members' ends");
        let meta = f.metadata.unwrap_or_default();
        assert_eq!(meta.len(), 21);
        assert_eq!(meta[0], ("k0".into(), Json::Int(20)));
        assert_eq!(get(&meta, "x"), Some(&Json::Object(vec![("y".into(), Json::Int(2))])));
        assert_eq!(f.tensors.len(), 1);
        assert_eq!(f.tensors[0].problem.as_deref(), Some("missing or malformed shape, data_offsets"));
    }

    #[test]
    fn bounds() {
        let deep = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(error(&deep).0, "not-object");
        let deeper = format!("{{\"a\": {}{}}}", "[".repeat(64), "]".repeat(64));
        assert_eq!(error(&deeper), ("too-deep", "header nested deeper than 64 at byte 77".to_string()));
        let mut entries = String::from("{");
        for i in 0..=MAX_TENSORS {
            entries.push_str(&format!("\"{i}\":0,"));
        }
        entries.push_str("\"0\":0}");
        assert_eq!(error(&entries), ("too-many", "more than 1,000,000 entries".to_string()));
        let text = "[0, 0, 0]";
        let mut parser = Parser { text, pos: 0, values: MAX_VALUES - 3, duplicates: vec![] };
        assert_eq!(parser.document().map(|_| ()), Err(Stop::TooManyValues));
    }

    #[test]
    fn not_an_object() {
        for (header, kind) in [("[]", "array"), (" \"x\" ", "string"), ("-1.5", "number"), ("false", "boolean"), ("null", "null")] {
            assert_eq!(error(header), ("not-object", format!("header is a JSON {kind}, not an object")));
        }
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}
