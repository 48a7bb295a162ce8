//! GGUF header facts: the metadata key/values and the tensor infos, every declared length checked
//! against the bytes left before it is read; tensor data is never read. Facts read before an
//! error are kept, with the error's message and offset.
//!
//! The twin of `mlguard/engine/pure/gguf.py`: the same facts and the same error texts
//! (`tests/test_format_kernels.py` checks both against each other). The facts are documented at
//! `mlguard.engine.gguf_header`. Strings are decoded as UTF-8 with U+FFFD for each maximal invalid
//! subpart (`String::from_utf8_lossy`, Python's `decode("utf-8", "replace")`).

use crate::safetensors::thousands;

/// Bytes of one metadata string (longer ones are an error: a tokenizer string is short, a
/// template < 1 MB).
pub const MAX_STRING: u64 = 1 << 24;
/// Metadata keys, tensors, and array elements per file.
pub const MAX_ITEMS: u64 = 1 << 24;
/// GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
/// Array elements kept in the facts (the rest are checked and skipped).
pub const KEPT_ARRAY: usize = 16;
const STRING: u32 = 8;
const ARRAY: u32 = 9;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    UInt(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    /// The metadata value type.
    pub kind: u32,
    pub value: Value,
    /// Offset of the entry (its key).
    pub at: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    /// The ggml type.
    pub kind: u32,
    /// Offset of the data, from the (aligned) start of the data section.
    pub offset: u64,
    /// Offset of the tensor info (its name).
    pub at: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub version: Option<u32>,
    pub metadata: Vec<Entry>,
    pub tensors: Vec<TensorInfo>,
    pub data_start: Option<usize>,
    pub error: Option<String>,
    pub error_offset: Option<usize>,
}

struct Fail {
    message: String,
    offset: usize,
}

fn fail<T>(message: String, offset: usize) -> Result<T, Fail> {
    Err(Fail { message, offset })
}

/// Byte width of a fixed-size metadata value type; None for strings, arrays and unknown types.
fn width(kind: u32) -> Option<u64> {
    match kind {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// The first `N` bytes of `b` (zero-padded), for `from_le_bytes`.
fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    for (o, i) in out.iter_mut().zip(b) {
        *o = *i;
    }
    out
}

/// A fixed-size value of type `kind` from its `width(kind)` bytes.
fn scalar(kind: u32, b: &[u8]) -> Value {
    match kind {
        0 => Value::UInt(u8::from_le_bytes(le(b)).into()),
        1 => Value::Int(i8::from_le_bytes(le(b)).into()),
        2 => Value::UInt(u16::from_le_bytes(le(b)).into()),
        3 => Value::Int(i16::from_le_bytes(le(b)).into()),
        4 => Value::UInt(u32::from_le_bytes(le(b)).into()),
        5 => Value::Int(i32::from_le_bytes(le(b)).into()),
        6 => Value::Float(f32::from_le_bytes(le(b)).into()),
        7 => Value::Bool(b.first().is_some_and(|&v| v != 0)),
        11 => Value::Int(i64::from_le_bytes(le(b))),
        12 => Value::Float(f64::from_le_bytes(le(b))),
        _ => Value::UInt(u64::from_le_bytes(le(b))),
    }
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Version 1 has 32-bit counts and lengths, later versions 64-bit.
    wide: bool,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Fail> {
        let end = usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n));
        match end.and_then(|end| self.data.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += bytes.len();
                Ok(bytes)
            }
            None => {
                let (pos, left) = (thousands(self.pos as u64), thousands(self.left() as u64));
                fail(format!("needs {} bytes at offset {pos}, {left} left", thousands(n)), self.pos)
            }
        }
    }

    fn u32(&mut self) -> Result<u32, Fail> {
        self.take(4).map(|b| u32::from_le_bytes(le(b)))
    }

    fn u64(&mut self) -> Result<u64, Fail> {
        self.take(8).map(|b| u64::from_le_bytes(le(b)))
    }

    /// A count or length: 32 bits in version 1, 64 after.
    fn count(&mut self) -> Result<u64, Fail> {
        if self.wide {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    /// The bytes of a string.
    fn string(&mut self) -> Result<&'a [u8], Fail> {
        let at = self.pos;
        let n = self.count()?;
        if n > MAX_STRING {
            return fail(format!("string of {} bytes", thousands(n)), at);
        }
        self.take(n)
    }

    /// A metadata value of type `kind`, whose type field is at `at`.
    fn value(&mut self, kind: u32, at: usize) -> Result<Value, Fail> {
        if let Some(w) = width(kind) {
            return self.take(w).map(|b| scalar(kind, b));
        }
        match kind {
            STRING => self.string().map(|raw| Value::Str(text(raw))),
            ARRAY => self.array(),
            _ => fail(format!("unknown metadata value type {kind}"), at),
        }
    }

    /// An array: its element type, its length, then the elements (the first `KEPT_ARRAY` kept).
    fn array(&mut self) -> Result<Value, Fail> {
        let at = self.pos;
        let item = self.u32()?;
        let n = self.count()?;
        if n > MAX_ITEMS || n > self.left() as u64 {
            return fail(format!("array of {} elements, more than the file can hold", thousands(n)), self.pos);
        }
        let kept = usize::try_from(n).map_or(KEPT_ARRAY, |n| n.min(KEPT_ARRAY));
        if let Some(w) = width(item) {
            // n <= MAX_ITEMS: the span cannot overflow
            let span = self.take(w * n)?;
            let items = span.chunks_exact(w as usize).take(kept);
            return Ok(Value::Array(items.map(|b| scalar(item, b)).collect()));
        }
        if item != STRING {
            return match item {
                ARRAY => fail("array of arrays".into(), at),
                _ => fail(format!("unknown metadata value type {item}"), at),
            };
        }
        let mut items = Vec::with_capacity(kept);
        for i in 0..n {
            let raw = self.string()?;
            if i < KEPT_ARRAY as u64 {
                items.push(Value::Str(text(raw)));
            }
        }
        Ok(Value::Array(items))
    }
}

/// Facts about the GGUF header at the start of `data`.
pub fn header_facts(data: &[u8]) -> Facts {
    let mut facts = Facts::default();
    let mut reader = Reader { data, pos: 0, wide: true };
    if let Err(e) = read(&mut reader, &mut facts) {
        facts.error = Some(e.message);
        facts.error_offset = Some(e.offset);
    }
    facts
}

fn read(reader: &mut Reader, facts: &mut Facts) -> Result<(), Fail> {
    if reader.take(4)? != b"GGUF" {
        return fail("not a GGUF file (magic)".into(), 0);
    }
    let version = reader.u32()?;
    facts.version = Some(version);
    if !(1..=3).contains(&version) {
        return fail(format!("unknown GGUF version {version}"), 4);
    }
    reader.wide = version > 1;
    let (n_tensors, n_kv) = (reader.count()?, reader.count()?);
    for (what, n) in [("tensors", n_tensors), ("metadata keys", n_kv)] {
        if n > MAX_ITEMS || n > reader.left() as u64 {
            return fail(format!("{} {what} declared, more than the file can hold", thousands(n)), reader.pos);
        }
    }
    for _ in 0..n_kv {
        let at = reader.pos;
        let key = text(reader.string()?);
        let kind_at = reader.pos;
        let kind = reader.u32()?;
        let value = reader.value(kind, kind_at)?;
        facts.metadata.push(Entry { key, kind, value, at });
    }
    for i in 0..n_tensors {
        let at = reader.pos;
        let name = text(reader.string()?);
        let n_dims = reader.u32()?;
        if n_dims > MAX_DIMS {
            return fail(format!("tensor #{} has {n_dims} dimensions (at most {MAX_DIMS})", i + 1), at);
        }
        let dims = (0..n_dims).map(|_| reader.count()).collect::<Result<Vec<_>, _>>()?;
        let kind = reader.u32()?;
        let offset = reader.u64()?;
        facts.tensors.push(TensorInfo { name, dims, kind, offset, at });
    }
    facts.data_start = Some(reader.pos);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &[u8]) -> Vec<u8> {
        let mut out = (s.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(s);
        out
    }

    fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(n_tensors.to_le_bytes());
        out.extend(n_kv.to_le_bytes());
        out
    }

    #[test]
    fn metadata_and_tensors() {
        let mut data = header(1, 3);
        data.extend(string(b"general.name"));
        data.extend(8u32.to_le_bytes());
        data.extend(string(b"caf\xc3\xa9 \xff\xe2\x82"));
        data.extend(string(b"scale"));
        data.extend(6u32.to_le_bytes());
        data.extend(0.1f32.to_le_bytes());
        data.extend(string(b"ids"));
        data.extend(9u32.to_le_bytes());
        data.extend(5u32.to_le_bytes());
        data.extend(20u64.to_le_bytes());
        for i in 0..20i32 {
            data.extend((-i).to_le_bytes());
        }
        let tensor_at = data.len();
        data.extend(string(b"w"));
        data.extend(2u32.to_le_bytes());
        data.extend(4u64.to_le_bytes());
        data.extend(8u64.to_le_bytes());
        data.extend(0u32.to_le_bytes());
        data.extend(64u64.to_le_bytes());
        let f = header_facts(&data);
        assert_eq!((f.version, f.error.as_deref(), f.data_start), (Some(3), None, Some(data.len())));
        assert_eq!(f.metadata[0].value, Value::Str("caf\u{e9} \u{fffd}\u{fffd}".into()));
        assert_eq!(f.metadata[1].value, Value::Float(f64::from(0.1f32)));
        let Value::Array(ids) = &f.metadata[2].value else { panic!("not an array") };
        assert_eq!(ids.len(), KEPT_ARRAY);
        assert_eq!(ids[3], Value::Int(-3));
        assert_eq!(f.tensors, vec![TensorInfo { name: "w".into(), dims: vec![4, 8], kind: 0, offset: 64, at: tensor_at }]);
    }

    #[test]
    fn errors_keep_the_facts_before_them() {
        let mut data = header(1, 2);
        data.extend(string(b"a"));
        data.extend(7u32.to_le_bytes());
        data.push(2);
        let at = data.len();
        data.extend(string(b"b"));
        data.extend(9u32.to_le_bytes());
        data.extend(9u32.to_le_bytes());
        data.extend(0u64.to_le_bytes());
        let f = header_facts(&data);
        assert_eq!(f.metadata.len(), 1);
        assert_eq!(f.metadata[0].value, Value::Bool(true));
        assert_eq!((f.error.as_deref(), f.error_offset), (Some("array of arrays"), Some(at + 13)));
    }

    #[test]
    fn every_length_is_checked() {
        let cases: Vec<(Vec<u8>, &str, usize)> = vec![
            (b"GGU".to_vec(), "needs 4 bytes at offset 0, 3 left", 0),
            (b"GGUFxxxx".to_vec(), "unknown GGUF version 2021161080", 4),
            (b"GGML\x03\0\0\0".to_vec(), "not a GGUF file (magic)", 0),
            (header(0, 1 << 40), "1,099,511,627,776 metadata keys declared, more than the file can hold", 24),
            ([header(0, 1), (1u64 << 30).to_le_bytes().to_vec()].concat(), "string of 1,073,741,824 bytes", 24),
            ([header(0, 1), 9u64.to_le_bytes().to_vec()].concat(), "needs 9 bytes at offset 32, 0 left", 32),
            (
                [header(0, 1), string(b"k"), 9u32.to_le_bytes().to_vec(), 12u32.to_le_bytes().to_vec(), 1000u64.to_le_bytes().to_vec(), vec![0; 1000]].concat(),
                "needs 8,000 bytes at offset 49, 1,000 left",
                49,
            ),
            ([header(0, 1), string(b"k"), 99u32.to_le_bytes().to_vec()].concat(), "unknown metadata value type 99", 33),
            (
                [header(1, 0), string(b"t"), 5u32.to_le_bytes().to_vec(), vec![0; 64]].concat(),
                "tensor #1 has 5 dimensions (at most 4)",
                24,
            ),
        ];
        for (data, message, offset) in cases {
            let f = header_facts(&data);
            assert_eq!((f.error.as_deref(), f.error_offset), (Some(message), Some(offset)));
        }
    }

    #[test]
    fn version_1_has_32_bit_counts() {
        let mut data = b"GGUF".to_vec();
        data.extend([1u32, 0, 1].iter().flat_map(|v| v.to_le_bytes()));
        data.extend(2u32.to_le_bytes());
        data.extend(b"ab");
        data.extend(4u32.to_le_bytes());
        data.extend(7u32.to_le_bytes());
        let f = header_facts(&data);
        assert_eq!(f.error, None);
        assert_eq!(f.metadata, vec![Entry { key: "ab".into(), kind: 4, value: Value::UInt(7), at: 16 }]);
    }
}
