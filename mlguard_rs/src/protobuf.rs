//! A streaming protobuf walk driven by a schema, with the semantics of a real parser: occurrences of a
//! singular message field merge, the last occurrence of a scalar wins, repeated fields append. Only the
//! fields the schema names are decoded; everything else (tensor bytes above all) is skipped by its length.
//! Malformed input (truncation, over-long varints, group wire types, field 0) stops the walk of that message
//! with an error; what was read before it is kept, and the first error of the whole walk is reported.
//!
//! The twin of `mlguard/engine/pure/protobuf.py`: same order of work (repeated messages decoded where
//! they occur, merged singular messages after the message's own fields), hence the same first error.

use std::collections::HashMap;

pub const MAX_DEPTH: usize = 64;
pub const MAX_FIELDS: u64 = 50_000_000;
/// Bytes of a string field kept (decoded as UTF-8 with replacement).
pub const MAX_TEXT: usize = 65536;

const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const SGROUP: u64 = 3;
const EGROUP: u64 = 4;
const I32: u64 = 5;

/// How a field is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Str,
    Strs,
    /// A singular message of the schema's message type at this index.
    Msg(usize),
    Msgs(usize),
    /// Recorded as `<name>_length`.
    Skip,
}

#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub kind: Kind,
}

/// Message types by index; each maps field numbers to what they are.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    pub messages: Vec<HashMap<u64, Field>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Str(String),
    Strs(Vec<String>),
    Msg(Message),
    Msgs(Vec<Message>),
    Length(u64),
}

/// A decoded message: (name, value) in the order the names were first set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub fields: Vec<(String, Value)>,
}

impl Message {
    fn slot(&mut self, name: &str) -> Option<&mut Value> {
        self.fields.iter_mut().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn set(&mut self, name: &str, value: Value) {
        match self.slot(name) {
            Some(v) => *v = value,
            None => self.fields.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkError {
    pub kind: &'static str,
    pub offset: usize,
}

pub struct Walk {
    pub root: Message,
    pub error: Option<WalkError>,
}

struct State {
    fields: u64,
    error: Option<WalkError>,
}

/// Decode `data` as message type `root` of `schema`.
pub fn walk(data: &[u8], schema: &Schema, root: usize) -> Walk {
    let mut state = State { fields: 0, error: None };
    let root = message(data, &[(0, data.len())], schema, root, &mut state, 0);
    Walk { root, error: state.error }
}

fn fail(state: &mut State, kind: &'static str, offset: usize) {
    if state.error.is_none() {
        state.error = Some(WalkError { kind, offset });
    }
}

fn message(data: &[u8], spans: &[(usize, usize)], schema: &Schema, kind: usize, state: &mut State,
           depth: usize) -> Message {
    let mut out = Message::default();
    if depth > MAX_DEPTH {
        fail(state, "too-deep", spans.first().map_or(0, |s| s.0));
        return out;
    }
    let fields = &schema.messages[kind];
    let mut singular: Vec<(u64, Vec<(usize, usize)>)> = Vec::new();
    'spans: for &(start, end) in spans {
        let mut pos = start;
        while pos < end {
            let (number, wire, value, next) = match field(data, pos, end, state) {
                Ok(f) => f,
                Err(e) => {
                    fail(state, e.kind, e.offset);
                    break 'spans;
                }
            };
            pos = next;
            let Some(spec) = fields.get(&number) else { continue };
            match (spec.kind, wire) {
                (Kind::Msg(_), LEN) => {
                    let span = (value.0 as usize, (value.0 + value.1) as usize);
                    match singular.iter_mut().find(|(n, _)| *n == number) {
                        Some((_, parts)) => parts.push(span),
                        None => singular.push((number, vec![span])),
                    }
                }
                (Kind::Msgs(sub), LEN) => {
                    let span = (value.0 as usize, (value.0 + value.1) as usize);
                    let decoded = message(data, &[span], schema, sub, state, depth + 1);
                    match out.slot(&spec.name) {
                        Some(Value::Msgs(list)) => list.push(decoded),
                        _ => out.set(&spec.name, Value::Msgs(vec![decoded])),
                    }
                }
                (Kind::Str, LEN) => out.set(&spec.name, Value::Str(text(data, value))),
                (Kind::Strs, LEN) => {
                    let s = text(data, value);
                    match out.slot(&spec.name) {
                        Some(Value::Strs(list)) => list.push(s),
                        _ => out.set(&spec.name, Value::Strs(vec![s])),
                    }
                }
                (Kind::Skip, LEN) => out.set(&format!("{}_length", spec.name), Value::Length(value.1)),
                (Kind::Int, VARINT) => out.set(&spec.name, Value::Int(value.0)),
                _ => {}
            }
        }
    }
    for (number, parts) in singular {
        let spec = &fields[&number];
        if let Kind::Msg(sub) = spec.kind {
            let decoded = message(data, &parts, schema, sub, state, depth + 1);
            out.set(&spec.name, Value::Msg(decoded));
        }
    }
    out
}

fn text(data: &[u8], (start, length): (u64, u64)) -> String {
    let start = start as usize;
    let end = start + (length as usize).min(MAX_TEXT);
    String::from_utf8_lossy(&data[start..end]).into_owned()
}

/// One field at `pos`: (number, wire type, value, next position). The value is the integer for
/// VARINT/I64/I32 fields (second member 0), and (start, length) for LEN fields.
fn field(data: &[u8], pos: usize, end: usize, state: &mut State)
         -> Result<(u64, u64, (u64, u64), usize), WalkError> {
    let at = pos;
    let (key, mut pos) = varint(data, pos, end)?;
    let (number, wire) = (key >> 3, key & 7);
    if number == 0 {
        return Err(WalkError { kind: "field-zero", offset: at });
    }
    state.fields += 1;
    if state.fields > MAX_FIELDS {
        return Err(WalkError { kind: "too-many-fields", offset: at });
    }
    let value = match wire {
        VARINT => {
            let (v, next) = varint(data, pos, end)?;
            pos = next;
            (v, 0)
        }
        I64 | I32 => {
            let width = if wire == I64 { 8 } else { 4 };
            if pos + width > end {
                return Err(WalkError { kind: "truncated", offset: at });
            }
            let mut v = 0u64;
            for (i, b) in data[pos..pos + width].iter().enumerate() {
                v |= (*b as u64) << (8 * i);
            }
            pos += width;
            (v, 0)
        }
        LEN => {
            let (length, next) = varint(data, pos, end)?;
            if length > (end - next) as u64 {
                return Err(WalkError { kind: "truncated", offset: at });
            }
            pos = next + length as usize;
            (next as u64, length)
        }
        SGROUP | EGROUP => return Err(WalkError { kind: "group-wire-type", offset: at }),
        _ => return Err(WalkError { kind: "bad-wire-type", offset: at }),
    };
    Ok((number, wire, value, pos))
}

fn varint(data: &[u8], pos: usize, end: usize) -> Result<(u64, usize), WalkError> {
    let mut value = 0u64;
    for i in 0..10 {
        if pos + i >= end {
            return Err(WalkError { kind: "truncated", offset: pos });
        }
        let byte = data[pos + i];
        value |= ((byte & 0x7F) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            if i == 9 && byte > 1 {
                return Err(WalkError { kind: "varint-overflow", offset: pos });
            }
            return Ok((value, pos + i + 1));
        }
    }
    Err(WalkError { kind: "varint-too-long", offset: pos })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Graph { 1: node (msgs Node), 2: name (str), 5: raw (skip) }, Node { 4: op (str), 3: n (int) }.
    fn schema() -> Schema {
        let mut graph = HashMap::new();
        graph.insert(1, Field { name: "node".into(), kind: Kind::Msgs(2) });
        graph.insert(2, Field { name: "name".into(), kind: Kind::Str });
        graph.insert(5, Field { name: "raw".into(), kind: Kind::Skip });
        let mut model = HashMap::new();
        model.insert(7, Field { name: "graph".into(), kind: Kind::Msg(1) });
        model.insert(1, Field { name: "ir".into(), kind: Kind::Int });
        let mut node = HashMap::new();
        node.insert(4, Field { name: "op".into(), kind: Kind::Str });
        node.insert(3, Field { name: "n".into(), kind: Kind::Int });
        Schema { messages: vec![model, graph, node] }
    }

    fn len_field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    fn graph(op: &str, name: &str) -> Vec<u8> {
        let mut g = len_field(1, &len_field(4, op.as_bytes()));
        g.extend(len_field(2, name.as_bytes()));
        g.extend(len_field(5, &[0u8; 100]));
        g
    }

    #[test]
    fn singular_messages_merge_and_scalars_take_the_last() {
        let mut data = vec![0x08, 3];
        data.extend(len_field(7, &graph("Relu", "first")));
        data.extend([0x08, 9]);
        data.extend(len_field(7, &graph("Abs", "second")));
        let w = walk(&data, &schema(), 0);
        assert_eq!(w.error, None);
        assert_eq!(w.root.get("ir"), Some(&Value::Int(9)));
        let Some(Value::Msg(g)) = w.root.get("graph") else { panic!() };
        assert_eq!(g.get("name"), Some(&Value::Str("second".into())));
        assert_eq!(g.get("raw_length"), Some(&Value::Length(100)));
        let Some(Value::Msgs(nodes)) = g.get("node") else { panic!() };
        let ops: Vec<_> = nodes.iter().map(|n| n.get("op").cloned()).collect();
        assert_eq!(ops, vec![Some(Value::Str("Relu".into())), Some(Value::Str("Abs".into()))]);
    }

    #[test]
    fn malformed_input_keeps_what_came_before() {
        let cases: &[(&[u8], &str, usize)] = &[
            (&[0x08, 1, 0x0b], "group-wire-type", 2),
            (&[0x08, 1, 0x3a, 0x05, 0x01], "truncated", 2),
            (&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], "varint-overflow", 1),
            (&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], "varint-too-long", 1),
            (&[0x00, 0x01], "field-zero", 0),
            (&[0x0e], "bad-wire-type", 0),
        ];
        for (data, kind, offset) in cases {
            let w = walk(data, &schema(), 0);
            assert_eq!(w.error, Some(WalkError { kind, offset: *offset }), "{kind}");
        }
        let w = walk(&[0x08, 1, 0x0b], &schema(), 0);
        assert_eq!(w.root.get("ir"), Some(&Value::Int(1)));
    }

    #[test]
    fn depth_is_bounded() {
        let mut s = schema();
        let mut nest = HashMap::new();
        nest.insert(1, Field { name: "inner".into(), kind: Kind::Msg(3) });
        s.messages.push(nest);
        let mut data = Vec::new();
        for _ in 0..100 {
            let mut wrapped = vec![0x0a];
            let mut n = data.len();
            loop {
                let b = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 { wrapped.push(b); break; }
                wrapped.push(b | 0x80);
            }
            wrapped.extend(data);
            data = wrapped;
        }
        let w = walk(&data, &s, 3);
        assert_eq!(w.error.map(|e| e.kind), Some("too-deep"));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let data = len_field(2, &[b'a', 0xff, b'b']);
        let w = walk(&data, &schema(), 1);
        assert_eq!(w.root.get("name"), Some(&Value::Str("a\u{fffd}b".into())));
    }
}
