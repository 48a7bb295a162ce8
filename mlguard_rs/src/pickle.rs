//! Pickle kernel: a symbolic, non-executing model of CPython's unpickler.
//!
//! [`analyze`] walks a byte stream the way `pickle.load` would (protocols 0-5, all 68 opcodes
//! that `pickletools` knows), but instead of building objects it keeps a *symbolic* stack and
//! memo: strings keep their text (and whether they came out of the memo), imported globals
//! keep their index in [`Facts::globals`], and call results remember which global produced
//! them. It records facts only (imports, call sites, extension codes, persistent ids, opcode
//! counts, where and why parsing stopped); deciding what is dangerous is the Python policy's
//! job.
//!
//! The pure-Python twin `mlguard/engine/pure/pickle.py` implements the same model and must
//! return identical facts; `tests/test_engine_pickle.py` checks both against each other.
//!
//! Hostile input: no recursion, no allocation by a declared length (every length is checked
//! against the bytes left first), bounded opcode count / memo size / stack depth / number of
//! pickles, and string operands keep at most `max_string` characters.

use std::collections::HashMap;
use std::rc::Rc;

/// Highest pickle protocol CPython's unpickler accepts (`pickle.HIGHEST_PROTOCOL`).
pub const HIGHEST_PROTOCOL: u8 = 5;

/// Opcode bytes, named as in `pickletools`.
pub mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

/// The `pickletools` name of an opcode byte, or `None` if the byte is not an opcode.
pub fn opcode_name(byte: u8) -> Option<&'static str> {
    use op::*;
    Some(match byte {
        MARK => "MARK",
        STOP => "STOP",
        POP => "POP",
        POP_MARK => "POP_MARK",
        DUP => "DUP",
        FLOAT => "FLOAT",
        INT => "INT",
        BININT => "BININT",
        BININT1 => "BININT1",
        LONG => "LONG",
        BININT2 => "BININT2",
        NONE => "NONE",
        PERSID => "PERSID",
        BINPERSID => "BINPERSID",
        REDUCE => "REDUCE",
        STRING => "STRING",
        BINSTRING => "BINSTRING",
        SHORT_BINSTRING => "SHORT_BINSTRING",
        UNICODE => "UNICODE",
        BINUNICODE => "BINUNICODE",
        APPEND => "APPEND",
        BUILD => "BUILD",
        GLOBAL => "GLOBAL",
        DICT => "DICT",
        EMPTY_DICT => "EMPTY_DICT",
        APPENDS => "APPENDS",
        GET => "GET",
        BINGET => "BINGET",
        INST => "INST",
        LONG_BINGET => "LONG_BINGET",
        LIST => "LIST",
        EMPTY_LIST => "EMPTY_LIST",
        OBJ => "OBJ",
        PUT => "PUT",
        BINPUT => "BINPUT",
        LONG_BINPUT => "LONG_BINPUT",
        SETITEM => "SETITEM",
        TUPLE => "TUPLE",
        EMPTY_TUPLE => "EMPTY_TUPLE",
        SETITEMS => "SETITEMS",
        BINFLOAT => "BINFLOAT",
        PROTO => "PROTO",
        NEWOBJ => "NEWOBJ",
        EXT1 => "EXT1",
        EXT2 => "EXT2",
        EXT4 => "EXT4",
        TUPLE1 => "TUPLE1",
        TUPLE2 => "TUPLE2",
        TUPLE3 => "TUPLE3",
        NEWTRUE => "NEWTRUE",
        NEWFALSE => "NEWFALSE",
        LONG1 => "LONG1",
        LONG4 => "LONG4",
        BINBYTES => "BINBYTES",
        SHORT_BINBYTES => "SHORT_BINBYTES",
        SHORT_BINUNICODE => "SHORT_BINUNICODE",
        BINUNICODE8 => "BINUNICODE8",
        BINBYTES8 => "BINBYTES8",
        EMPTY_SET => "EMPTY_SET",
        ADDITEMS => "ADDITEMS",
        FROZENSET => "FROZENSET",
        NEWOBJ_EX => "NEWOBJ_EX",
        STACK_GLOBAL => "STACK_GLOBAL",
        MEMOIZE => "MEMOIZE",
        FRAME => "FRAME",
        BYTEARRAY8 => "BYTEARRAY8",
        NEXT_BUFFER => "NEXT_BUFFER",
        READONLY_BUFFER => "READONLY_BUFFER",
        _ => return None,
    })
}

/// Bounds on the work done for one input. Mirrors `mlguard.engine.PickleLimits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Opcodes executed, summed over all pickles of the input.
    pub max_opcodes: u64,
    /// Distinct memo keys alive in one pickle.
    pub max_memo: u64,
    /// Stack items plus open marks in one pickle.
    pub max_stack: u64,
    /// Pickles parsed back to back.
    pub max_pickles: u64,
    /// Characters kept of a string operand (longer module/name are cut, `truncated` set).
    pub max_string: u64,
    /// Facts recorded (globals + calls + ext + persistent ids): bounds the output's size.
    pub max_facts: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_opcodes: 20_000_000,
            max_memo: 1_000_000,
            max_stack: 1_000_000,
            max_pickles: 64,
            max_string: 1024,
            max_facts: 1_000_000,
        }
    }
}

/// How one pickle ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Reached STOP.
    Stop,
    /// The bytes ended inside the pickle.
    Truncated,
    /// A malformed opcode or operand; see [`ErrorCode`].
    Error,
    /// A [`Limits`] bound was hit.
    Limit,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Stop => "stop",
            Status::Truncated => "truncated",
            Status::Error => "error",
            Status::Limit => "limit",
        }
    }
}

/// The fixed set of reasons a pickle can fail to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// A byte that is not an opcode where an opcode was expected.
    InvalidOpcode,
    /// The data ends inside an opcode's argument or before STOP.
    Truncated,
    /// An opcode needs more stack items (above the innermost mark) than there are.
    StackUnderflow,
    /// An opcode needs a MARK and there is none.
    MarkMissing,
    /// GET of a memo key that was never stored (in this pickle).
    MemoMissing,
    /// A malformed operand: number text, quoting, escapes, undecodable text, an odd
    /// DICT/SETITEMS item count, an EXT code <= 0, a memo key out of range.
    BadArgument,
    /// A signed length prefix (BINSTRING, LONG4) is negative.
    NegativeLength,
    /// PROTO names a protocol above [`HIGHEST_PROTOCOL`].
    UnsupportedProtocol,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidOpcode => "invalid-opcode",
            ErrorCode::Truncated => "truncated",
            ErrorCode::StackUnderflow => "stack-underflow",
            ErrorCode::MarkMissing => "mark-missing",
            ErrorCode::MemoMissing => "memo-missing",
            ErrorCode::BadArgument => "bad-argument",
            ErrorCode::NegativeLength => "negative-length",
            ErrorCode::UnsupportedProtocol => "unsupported-protocol",
        }
    }
}

/// Which bound stopped the analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    Opcodes,
    Memo,
    Stack,
    Pickles,
    Facts,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Opcodes => "opcodes",
            LimitKind::Memo => "memo",
            LimitKind::Stack => "stack",
            LimitKind::Pickles => "pickles",
            LimitKind::Facts => "facts",
        }
    }
}

/// How a global's module and name were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Text in the opcode (GLOBAL, INST) or string operands pushed directly (STACK_GLOBAL).
    Literal,
    /// At least one STACK_GLOBAL operand was fetched from the memo.
    Memo,
    /// At least one STACK_GLOBAL operand is not a string known to the parser (e.g. a call result).
    Computed,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Literal => "literal",
            Resolution::Memo => "memo",
            Resolution::Computed => "computed",
        }
    }
}

/// Text as Python sees it: a sequence of code points, possibly including lone surrogates
/// (BINUNICODE is decoded with `surrogatepass`, UNICODE with `raw-unicode-escape`).
/// Stored as UTF-8 where a surrogate is encoded like any other code point (3 bytes
/// `ED A0..BF 80..BF`), i.e. exactly what Python's `str.encode("utf-8", "surrogatepass")` gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text {
    bytes: Vec<u8>,
    surrogates: bool,
}

impl Text {
    /// The code points encoded as (surrogate-tolerant) UTF-8.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// True if some code point is a lone surrogate (then the bytes are not valid UTF-8).
    pub fn has_surrogates(&self) -> bool {
        self.surrogates
    }
    /// The text as `&str`, or `None` if it contains surrogates.
    pub fn as_str(&self) -> Option<&str> {
        if self.surrogates {
            None
        } else {
            std::str::from_utf8(&self.bytes).ok()
        }
    }
}

/// One pickle of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickleInfo {
    pub index: usize,
    /// Offset of its first opcode.
    pub start: usize,
    /// Offset just past its STOP opcode, `None` unless `status` is `Stop`. The next pickle
    /// is analysed from here (where `pickle.load` on a buffered file leaves the file).
    pub end: Option<usize>,
    /// When a FRAME announced bytes beyond STOP: where that frame ends, which is where loaders
    /// that read frames whole (pure-Python unpickler, C unpickler on a BytesIO) start the next
    /// pickle. `None` otherwise (picklers never write such frames).
    pub frame_end: Option<usize>,
    /// Argument of its first PROTO opcode, if any.
    pub protocol: Option<u8>,
    /// Opcodes executed (including STOP and an opcode that failed; not an invalid byte).
    pub opcodes: u64,
    pub status: Status,
    /// Set when `status` is `Error` or `Truncated`.
    pub error: Option<ErrorCode>,
    /// Offset of the opcode where parsing stopped (or the end of data), unless `Stop`.
    pub error_offset: Option<usize>,
}

/// An import: GLOBAL, STACK_GLOBAL or INST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalFact {
    pub pickle: usize,
    pub offset: usize,
    pub opcode: u8,
    pub module: Option<Text>,
    pub name: Option<Text>,
    pub resolution: Resolution,
    /// The unpickler's protocol when the import ran (last PROTO before it, 0 if none).
    pub protocol: u8,
    /// Module or name was longer than `max_string` characters and was cut.
    pub truncated: bool,
}

/// A call site: REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX, BUILD; and APPEND, APPENDS, SETITEM,
/// SETITEMS, ADDITEMS when the container they fill is an imported global (they call its
/// `append`/`extend`/`__setitem__`/`add`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFact {
    pub pickle: usize,
    pub offset: usize,
    pub opcode: u8,
    /// Index into [`Facts::globals`] of what is called (see the facade docs), if known.
    pub target: Option<usize>,
}

/// EXT1/EXT2/EXT4: an import through `copyreg`'s extension registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtFact {
    pub pickle: usize,
    pub offset: usize,
    pub opcode: u8,
    pub code: i64,
}

/// PERSID/BINPERSID: a call of the loader's `persistent_load`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersIdFact {
    pub pickle: usize,
    pub offset: usize,
    pub opcode: u8,
}

/// Bytes after the last pickle that do not start another pickle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailing {
    pub offset: usize,
    pub length: usize,
}

/// Everything [`analyze`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub pickles: Vec<PickleInfo>,
    pub globals: Vec<GlobalFact>,
    pub calls: Vec<CallFact>,
    pub ext: Vec<ExtFact>,
    pub persistent_ids: Vec<PersIdFact>,
    /// Executions per opcode byte, summed over all pickles.
    pub opcode_counts: [u64; 256],
    pub limit: Option<LimitKind>,
    pub trailing: Option<Trailing>,
}

impl Facts {
    fn new() -> Self {
        Facts {
            pickles: Vec::new(),
            globals: Vec::new(),
            calls: Vec::new(),
            ext: Vec::new(),
            persistent_ids: Vec::new(),
            opcode_counts: [0; 256],
            limit: None,
            trailing: None,
        }
    }

    /// Non-zero opcode counts as (pickletools name, count), in opcode byte order.
    pub fn named_opcode_counts(&self) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        for (byte, &count) in self.opcode_counts.iter().enumerate() {
            if count > 0 {
                if let Some(name) = opcode_name(byte as u8) {
                    out.push((name, count));
                }
            }
        }
        out
    }
}

/// Analyze `data`: every pickle in it, back to back, until STOP is followed by the end of
/// data or by a byte that is not an opcode (recorded as `trailing`), a pickle fails, or a
/// limit is hit. Never panics, never executes anything.
pub fn analyze(data: &[u8], limits: &Limits) -> Facts {
    let mut facts = Facts::new();
    let mut total_opcodes: u64 = 0;
    let mut pos = 0usize;
    loop {
        if !facts.pickles.is_empty() {
            if pos >= data.len() {
                break;
            }
            if opcode_name(data[pos]).is_none() {
                facts.trailing = Some(Trailing {
                    offset: pos,
                    length: data.len() - pos,
                });
                break;
            }
        }
        if facts.pickles.len() as u64 >= limits.max_pickles {
            facts.limit = Some(LimitKind::Pickles);
            break;
        }
        let index = facts.pickles.len();
        let mut machine = Machine::new(data, pos, index, limits);
        let info = machine.run(&mut facts, &mut total_opcodes);
        let end = info.end;
        facts.pickles.push(info);
        match end {
            Some(e) => pos = e,
            None => break,
        }
    }
    facts
}

// ---------------------------------------------------------------------------------------
// Symbolic machine
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct StrVal {
    text: Text,
    truncated: bool,
}

/// A symbolic stack / memo value.
#[derive(Clone, Debug)]
enum Val {
    /// Anything the analysis does not track (numbers, bytes, containers, ...).
    Other,
    /// A str pushed by a string opcode.
    Str(Rc<StrVal>),
    /// A str fetched from the memo.
    MemoStr(Rc<StrVal>),
    /// An imported object: index into `Facts::globals`.
    Global(usize),
    /// The result of a call; the global index of the callable if it was a global.
    Result(Option<usize>),
}

/// The memo: a map from key to value. Picklers use small consecutive keys, so those live in
/// a vector; keys far beyond the number of entries (which a hostile stream may choose) go to
/// a hash map, so memory stays proportional to the entries, never to a key's value.
#[derive(Default)]
struct Memo {
    dense: Vec<Option<Val>>,
    sparse: HashMap<u64, Val>,
    len: usize,
}

impl Memo {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, key: u64) -> Option<&Val> {
        match usize::try_from(key) {
            Ok(k) if k < self.dense.len() => self.dense[k].as_ref(),
            _ => self.sparse.get(&key),
        }
    }

    fn insert(&mut self, key: u64, v: Val) {
        let bound = (self.len as u64).saturating_mul(2).saturating_add(1024);
        if key >= self.dense.len() as u64 && key < bound {
            // Grow the vector (to at most ~4x the entries + 2048) and move sparse keys into it.
            let new_len = ((key + 1).next_power_of_two() as usize).max(64);
            self.dense.resize(new_len, None);
            if !self.sparse.is_empty() {
                let dense = &mut self.dense;
                self.sparse.retain(|&k, val| {
                    if k < new_len as u64 {
                        dense[k as usize] = Some(std::mem::replace(val, Val::Other));
                        false
                    } else {
                        true
                    }
                });
            }
        }
        let added = match usize::try_from(key) {
            Ok(k) if k < self.dense.len() => self.dense[k].replace(v).is_none(),
            _ => self.sparse.insert(key, v).is_none(),
        };
        if added {
            self.len += 1;
        }
    }
}

/// Why an opcode stopped the pickle.
enum Halt {
    Truncated,
    Error(ErrorCode),
}

type Step<T> = Result<T, Halt>;

fn err<T>(code: ErrorCode) -> Step<T> {
    Err(Halt::Error(code))
}

enum Flow {
    Continue,
    Stop,
}

struct Machine<'a, 'l> {
    data: &'a [u8],
    pos: usize,
    index: usize,
    limits: &'l Limits,
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: Memo,
    proto: u8,
    first_proto: Option<u8>,
    /// Furthest offset announced by a FRAME opcode.
    frame_end: usize,
}

impl<'a, 'l> Machine<'a, 'l> {
    fn new(data: &'a [u8], start: usize, index: usize, limits: &'l Limits) -> Self {
        Machine {
            data,
            pos: start,
            index,
            limits,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: Memo::default(),
            proto: 0,
            first_proto: None,
            frame_end: 0,
        }
    }

    fn run(&mut self, facts: &mut Facts, total_opcodes: &mut u64) -> PickleInfo {
        let start = self.pos;
        let mut opcodes: u64 = 0;
        let (status, error, error_offset) = self.run_opcodes(facts, total_opcodes, &mut opcodes);
        let (end, frame_end) = match status {
            Status::Stop => (
                Some(self.pos),
                Some(self.frame_end).filter(|&f| f > self.pos),
            ),
            _ => (None, None),
        };
        PickleInfo {
            index: self.index,
            start,
            end,
            frame_end,
            protocol: self.first_proto,
            opcodes,
            status,
            error,
            error_offset,
        }
    }

    /// Execute opcodes until the pickle ends: (status, error, offset where it stopped).
    fn run_opcodes(
        &mut self,
        facts: &mut Facts,
        total_opcodes: &mut u64,
        opcodes: &mut u64,
    ) -> (Status, Option<ErrorCode>, Option<usize>) {
        loop {
            let at = self.pos;
            if at >= self.data.len() {
                return (Status::Truncated, Some(ErrorCode::Truncated), Some(at));
            }
            let code = self.data[at];
            if opcode_name(code).is_none() {
                return (Status::Error, Some(ErrorCode::InvalidOpcode), Some(at));
            }
            if *total_opcodes >= self.limits.max_opcodes {
                facts.limit = Some(LimitKind::Opcodes);
                return (Status::Limit, None, Some(at));
            }
            *total_opcodes += 1;
            *opcodes += 1;
            facts.opcode_counts[code as usize] += 1;
            self.pos = at + 1;
            match self.exec(code, at, facts) {
                Ok(Flow::Stop) => return (Status::Stop, None, None),
                Ok(Flow::Continue) => {}
                Err(Halt::Truncated) => {
                    return (Status::Truncated, Some(ErrorCode::Truncated), Some(at))
                }
                Err(Halt::Error(e)) => return (Status::Error, Some(e), Some(at)),
            }
            let depth = (self.stack.len() as u64).saturating_add(self.marks.len() as u64);
            if depth > self.limits.max_stack {
                facts.limit = Some(LimitKind::Stack);
                return (Status::Limit, None, Some(at));
            }
            if self.memo.len() as u64 > self.limits.max_memo {
                facts.limit = Some(LimitKind::Memo);
                return (Status::Limit, None, Some(at));
            }
            let recorded = facts.globals.len()
                + facts.calls.len()
                + facts.ext.len()
                + facts.persistent_ids.len();
            if recorded as u64 > self.limits.max_facts {
                facts.limit = Some(LimitKind::Facts);
                return (Status::Limit, None, Some(at));
            }
        }
    }

    // -- reading ------------------------------------------------------------------------

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: u64) -> Step<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(Halt::Truncated);
        }
        let n = n as usize;
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn take_array<const N: usize>(&mut self) -> Step<[u8; N]> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Step<u8> {
        Ok(self.take_array::<1>()?[0])
    }
    fn u16(&mut self) -> Step<u16> {
        Ok(u16::from_le_bytes(self.take_array::<2>()?))
    }
    fn u32(&mut self) -> Step<u32> {
        Ok(u32::from_le_bytes(self.take_array::<4>()?))
    }
    fn i32(&mut self) -> Step<i32> {
        Ok(i32::from_le_bytes(self.take_array::<4>()?))
    }
    fn u64(&mut self) -> Step<u64> {
        Ok(u64::from_le_bytes(self.take_array::<8>()?))
    }

    /// A text line without its `\n`. Like the C unpickler, a line that runs into the end of
    /// the data without `\n` means the pickle is truncated.
    fn line(&mut self) -> Step<&'a [u8]> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => Err(Halt::Truncated),
        }
    }

    // -- stack --------------------------------------------------------------------------

    fn base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn need(&self, n: usize) -> Step<()> {
        if self.stack.len() - self.base() < n {
            err(ErrorCode::StackUnderflow)
        } else {
            Ok(())
        }
    }

    fn pop(&mut self) -> Step<Val> {
        self.need(1)?;
        Ok(self.stack.pop().unwrap_or(Val::Other))
    }

    fn top(&self) -> Step<&Val> {
        self.need(1)?;
        self.stack
            .last()
            .ok_or(Halt::Error(ErrorCode::StackUnderflow))
    }

    fn set_top(&mut self, v: Val) -> Step<()> {
        self.need(1)?;
        if let Some(t) = self.stack.last_mut() {
            *t = v;
        }
        Ok(())
    }

    /// Pop the innermost mark and the items above it: (item count, first item).
    fn pop_mark(&mut self) -> Step<(usize, Option<Val>)> {
        let m = match self.marks.pop() {
            Some(m) => m,
            None => return err(ErrorCode::MarkMissing),
        };
        let count = self.stack.len() - m;
        let first = self.stack.get(m).cloned();
        self.stack.truncate(m);
        Ok((count, first))
    }

    fn memo_put(&mut self, key: u64) -> Step<()> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Step<()> {
        let v = match self.memo.get(key) {
            Some(Val::Str(s)) => Val::MemoStr(s.clone()),
            Some(v) => v.clone(),
            None => return err(ErrorCode::MemoMissing),
        };
        self.stack.push(v);
        Ok(())
    }

    fn push_str(&mut self, (text, truncated): (Text, bool)) {
        self.stack
            .push(Val::Str(Rc::new(StrVal { text, truncated })));
    }

    fn max_string(&self) -> usize {
        usize::try_from(self.limits.max_string).unwrap_or(usize::MAX)
    }

    // -- facts --------------------------------------------------------------------------

    /// Record an import; `names` is (module, name, either-was-cut) unless unresolvable.
    fn add_global(
        &self,
        facts: &mut Facts,
        at: usize,
        opcode: u8,
        resolution: Resolution,
        names: Option<(Text, Text, bool)>,
    ) -> usize {
        let (module, name, truncated) = match names {
            Some((m, n, t)) => (Some(m), Some(n), t),
            None => (None, None, false),
        };
        facts.globals.push(GlobalFact {
            pickle: self.index,
            offset: at,
            opcode,
            module,
            name,
            resolution,
            protocol: self.proto,
            truncated,
        });
        facts.globals.len() - 1
    }

    fn add_call(&self, facts: &mut Facts, at: usize, opcode: u8, target: Option<usize>) {
        facts.calls.push(CallFact {
            pickle: self.index,
            offset: at,
            opcode,
            target,
        });
    }

    /// Record a container-filling opcode as a call if the container (top of stack) is a global.
    fn container_call(&self, facts: &mut Facts, at: usize, opcode: u8) -> Step<()> {
        if let Val::Global(g) = self.top()? {
            self.add_call(facts, at, opcode, Some(*g));
        }
        Ok(())
    }

    // -- one opcode ---------------------------------------------------------------------

    fn exec(&mut self, code: u8, at: usize, facts: &mut Facts) -> Step<Flow> {
        use op::*;
        match code {
            PROTO => {
                let p = self.u8()?;
                if p > HIGHEST_PROTOCOL {
                    return err(ErrorCode::UnsupportedProtocol);
                }
                self.proto = p;
                if self.first_proto.is_none() {
                    self.first_proto = Some(p);
                }
            }
            FRAME => {
                // Frames are transparent (as in the C unpickler), but the announced frame
                // must be present in the data.
                let n = self.u64()?;
                if n > self.remaining() as u64 {
                    return Err(Halt::Truncated);
                }
                self.frame_end = self.frame_end.max(self.pos + n as usize);
            }
            STOP => {
                self.pop()?;
                return Ok(Flow::Stop);
            }
            MARK => self.marks.push(self.stack.len()),
            POP => {
                if self.stack.len() > self.base() {
                    self.stack.pop();
                } else if self.marks.pop().is_none() {
                    return err(ErrorCode::StackUnderflow);
                }
            }
            POP_MARK => {
                self.pop_mark()?;
            }
            DUP => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }

            // -- numbers and other untracked values ------------------------------------
            NONE | NEWTRUE | NEWFALSE | EMPTY_TUPLE | EMPTY_LIST | EMPTY_DICT | EMPTY_SET
            | NEXT_BUFFER => self.stack.push(Val::Other),
            INT | LONG => {
                let l = self.line()?;
                let l = if code == LONG {
                    strip_long_suffix(l)
                } else {
                    l
                };
                if !lenient_number(l, false) {
                    return err(ErrorCode::BadArgument);
                }
                self.stack.push(Val::Other);
            }
            FLOAT => {
                let l = self.line()?;
                if !lenient_number(l, true) {
                    return err(ErrorCode::BadArgument);
                }
                self.stack.push(Val::Other);
            }
            BININT => {
                self.take(4)?;
                self.stack.push(Val::Other);
            }
            BININT1 => {
                self.take(1)?;
                self.stack.push(Val::Other);
            }
            BININT2 => {
                self.take(2)?;
                self.stack.push(Val::Other);
            }
            BINFLOAT => {
                self.take(8)?;
                self.stack.push(Val::Other);
            }
            LONG1 => {
                let n = self.u8()?;
                self.take(n as u64)?;
                self.stack.push(Val::Other);
            }
            LONG4 => {
                let n = self.i32()?;
                if n < 0 {
                    return err(ErrorCode::NegativeLength);
                }
                self.take(n as u64)?;
                self.stack.push(Val::Other);
            }
            SHORT_BINBYTES => {
                let n = self.u8()?;
                self.take(n as u64)?;
                self.stack.push(Val::Other);
            }
            BINBYTES => {
                let n = self.u32()?;
                self.take(n as u64)?;
                self.stack.push(Val::Other);
            }
            BINBYTES8 | BYTEARRAY8 => {
                let n = self.u64()?;
                self.take(n)?;
                self.stack.push(Val::Other);
            }
            // The top becomes a read-only view of itself, or stays as it is: keep its symbol.
            READONLY_BUFFER => {
                self.need(1)?;
            }

            // -- strings ---------------------------------------------------------------
            STRING => {
                let l = self.line()?;
                let n = l.len();
                if n < 2 || l[0] != l[n - 1] || (l[0] != b'\'' && l[0] != b'"') {
                    return err(ErrorCode::BadArgument);
                }
                let raw = match escape_decode(&l[1..n - 1]) {
                    Some(r) => r,
                    None => return err(ErrorCode::BadArgument),
                };
                let t = decode_legacy_str(&raw, self.max_string());
                self.push_str(t);
            }
            BINSTRING => {
                let n = self.i32()?;
                if n < 0 {
                    return err(ErrorCode::NegativeLength);
                }
                let raw = self.take(n as u64)?;
                let t = decode_legacy_str(raw, self.max_string());
                self.push_str(t);
            }
            SHORT_BINSTRING => {
                let n = self.u8()?;
                let raw = self.take(n as u64)?;
                let t = decode_legacy_str(raw, self.max_string());
                self.push_str(t);
            }
            UNICODE => {
                let l = self.line()?;
                match raw_unicode_escape_decode(l, self.max_string()) {
                    Some(t) => self.push_str(t),
                    None => return err(ErrorCode::BadArgument),
                }
            }
            SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                let n = match code {
                    SHORT_BINUNICODE => self.u8()? as u64,
                    BINUNICODE => self.u32()? as u64,
                    _ => self.u64()?,
                };
                let raw = self.take(n)?;
                match decode_utf8(raw, true, self.max_string()) {
                    Some(t) => self.push_str(t),
                    None => return err(ErrorCode::BadArgument),
                }
            }

            // -- containers ------------------------------------------------------------
            TUPLE1 => self.set_top(Val::Other)?,
            TUPLE2 | TUPLE3 => {
                let n = if code == TUPLE2 { 2 } else { 3 };
                self.need(n)?;
                let keep = self.stack.len() - n;
                self.stack.truncate(keep);
                self.stack.push(Val::Other);
            }
            TUPLE | LIST | FROZENSET => {
                self.pop_mark()?;
                self.stack.push(Val::Other);
            }
            DICT => {
                let (count, _) = self.pop_mark()?;
                if count % 2 != 0 {
                    return err(ErrorCode::BadArgument);
                }
                self.stack.push(Val::Other);
            }
            // Filling a container calls its append/extend/__setitem__/add: recorded as a call
            // when the container is an imported global (e.g. `os.environ[...] = ...`).
            APPEND => {
                self.need(2)?;
                self.stack.pop();
                self.container_call(facts, at, code)?;
            }
            APPENDS | ADDITEMS => {
                self.pop_mark()?;
                self.need(1)?;
                self.container_call(facts, at, code)?;
            }
            SETITEM => {
                self.need(3)?;
                let keep = self.stack.len() - 2;
                self.stack.truncate(keep);
                self.container_call(facts, at, code)?;
            }
            SETITEMS => {
                let (count, _) = self.pop_mark()?;
                self.need(1)?;
                if count % 2 != 0 {
                    return err(ErrorCode::BadArgument);
                }
                self.container_call(facts, at, code)?;
            }

            // -- memo ------------------------------------------------------------------
            PUT => {
                let l = self.line()?;
                self.need(1)?;
                let key = match parse_memo_key(l) {
                    MemoKey::Key(k) => k,
                    MemoKey::Negative | MemoKey::Invalid => return err(ErrorCode::BadArgument),
                };
                self.memo_put(key)?;
            }
            BINPUT => {
                let k = self.u8()?;
                self.memo_put(k as u64)?;
            }
            LONG_BINPUT => {
                let k = self.u32()?;
                self.memo_put(k as u64)?;
            }
            MEMOIZE => {
                let k = self.memo.len() as u64;
                self.memo_put(k)?;
            }
            GET => {
                let l = self.line()?;
                match parse_memo_key(l) {
                    MemoKey::Key(k) => self.memo_get(k)?,
                    MemoKey::Negative => return err(ErrorCode::MemoMissing),
                    MemoKey::Invalid => return err(ErrorCode::BadArgument),
                }
            }
            BINGET => {
                let k = self.u8()?;
                self.memo_get(k as u64)?;
            }
            LONG_BINGET => {
                let k = self.u32()?;
                self.memo_get(k as u64)?;
            }

            // -- imports ---------------------------------------------------------------
            GLOBAL | INST => {
                let ascii_only = code == INST;
                let max = self.max_string();
                let m = self.line()?;
                let (module, mt) = match decode_line_name(m, ascii_only, max) {
                    Some(t) => t,
                    None => return err(ErrorCode::BadArgument),
                };
                let n = self.line()?;
                let (name, nt) = match decode_line_name(n, ascii_only, max) {
                    Some(t) => t,
                    None => return err(ErrorCode::BadArgument),
                };
                let g = self.add_global(
                    facts,
                    at,
                    code,
                    Resolution::Literal,
                    Some((module, name, mt || nt)),
                );
                if code == INST {
                    self.pop_mark()?;
                    self.add_call(facts, at, INST, Some(g));
                    self.stack.push(Val::Result(Some(g)));
                } else {
                    self.stack.push(Val::Global(g));
                }
            }
            STACK_GLOBAL => {
                self.need(2)?;
                let name = self.pop()?;
                let module = self.pop()?;
                let g = match (&module, &name) {
                    (Val::Str(m) | Val::MemoStr(m), Val::Str(n) | Val::MemoStr(n)) => {
                        let memo =
                            matches!(module, Val::MemoStr(_)) || matches!(name, Val::MemoStr(_));
                        let res = if memo {
                            Resolution::Memo
                        } else {
                            Resolution::Literal
                        };
                        self.add_global(
                            facts,
                            at,
                            code,
                            res,
                            Some((m.text.clone(), n.text.clone(), m.truncated || n.truncated)),
                        )
                    }
                    _ => self.add_global(facts, at, code, Resolution::Computed, None),
                };
                self.stack.push(Val::Global(g));
            }
            EXT1 | EXT2 | EXT4 => {
                let ext_code: i64 = match code {
                    EXT1 => self.u8()? as i64,
                    EXT2 => self.u16()? as i64,
                    _ => self.i32()? as i64,
                };
                if ext_code <= 0 {
                    return err(ErrorCode::BadArgument);
                }
                facts.ext.push(ExtFact {
                    pickle: self.index,
                    offset: at,
                    opcode: code,
                    code: ext_code,
                });
                self.stack.push(Val::Other);
            }

            // -- calls -----------------------------------------------------------------
            REDUCE => {
                self.need(2)?;
                self.stack.pop();
                let target = global_of(self.top()?);
                self.add_call(facts, at, code, target);
                self.set_top(Val::Result(target))?;
            }
            BUILD => {
                self.need(2)?;
                self.stack.pop();
                let target = match self.top()? {
                    Val::Global(g) => Some(*g),
                    Val::Result(t) => *t,
                    _ => None,
                };
                self.add_call(facts, at, code, target);
            }
            NEWOBJ | NEWOBJ_EX => {
                let n = if code == NEWOBJ { 2 } else { 3 };
                self.need(n)?;
                let keep = self.stack.len() - (n - 1);
                self.stack.truncate(keep);
                let target = global_of(self.top()?);
                self.add_call(facts, at, code, target);
                self.set_top(Val::Result(target))?;
            }
            OBJ => {
                let (count, first) = self.pop_mark()?;
                if count == 0 {
                    return err(ErrorCode::StackUnderflow);
                }
                let target = first.as_ref().and_then(global_of);
                self.add_call(facts, at, code, target);
                self.stack.push(Val::Result(target));
            }

            // -- persistent ids --------------------------------------------------------
            PERSID => {
                let l = self.line()?;
                if !l.is_ascii() {
                    return err(ErrorCode::BadArgument);
                }
                facts.persistent_ids.push(PersIdFact {
                    pickle: self.index,
                    offset: at,
                    opcode: code,
                });
                self.stack.push(Val::Other);
            }
            BINPERSID => {
                self.pop()?;
                facts.persistent_ids.push(PersIdFact {
                    pickle: self.index,
                    offset: at,
                    opcode: code,
                });
                self.stack.push(Val::Other);
            }
            _ => return err(ErrorCode::InvalidOpcode),
        }
        Ok(Flow::Continue)
    }
}

fn global_of(v: &Val) -> Option<usize> {
    match v {
        Val::Global(g) => Some(*g),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Operand decoding (kept in sync with mlguard/engine/pure/pickle.py)
// ---------------------------------------------------------------------------------------

/// Python's `bytes.isspace()` set, which `int(bytes)` strips.
fn is_py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn strip_py_space(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_py_space(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_py_space(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// LONG's argument without the Python 2 `L` suffix.
fn strip_long_suffix(l: &[u8]) -> &[u8] {
    match l.last() {
        Some(b'L') => &l[..l.len() - 1],
        _ => l,
    }
}

/// A deliberately lenient check of INT / LONG / FLOAT text: it accepts everything CPython
/// accepts (and more), so the analysis never stops where CPython would continue.
/// After stripping whitespace: INT/LONG `[+-]?[0-9A-Za-z_]+`, FLOAT `[0-9A-Za-z_.+-]+`.
fn lenient_number(l: &[u8], float: bool) -> bool {
    let s = strip_py_space(l);
    if float {
        !s.is_empty()
            && s.iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'))
    } else {
        let digits = match s.first() {
            Some(b'+' | b'-') => &s[1..],
            _ => s,
        };
        !digits.is_empty()
            && digits
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'_')
    }
}

enum MemoKey {
    Key(u64),
    Negative,
    Invalid,
}

/// A GET/PUT argument as `int(text)` reads it (whitespace, sign, `_` between digits),
/// restricted to what the C unpickler can index (|key| <= i64::MAX).
fn parse_memo_key(l: &[u8]) -> MemoKey {
    let s = strip_py_space(l);
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return MemoKey::Invalid;
    }
    let mut value: u64 = 0;
    let mut prev_digit = false;
    for &b in digits {
        if b.is_ascii_digit() {
            value = match value
                .checked_mul(10)
                .and_then(|v| v.checked_add((b - b'0') as u64))
            {
                Some(v) if v <= i64::MAX as u64 => v,
                _ => return MemoKey::Invalid,
            };
            prev_digit = true;
        } else if b == b'_' && prev_digit {
            prev_digit = false;
        } else {
            return MemoKey::Invalid;
        }
    }
    if !prev_digit {
        return MemoKey::Invalid;
    }
    if neg && value != 0 {
        MemoKey::Negative
    } else {
        MemoKey::Key(value)
    }
}

/// Builds a [`Text`] from code points, keeping at most `max` of them.
struct TextBuilder {
    text: Text,
    count: usize,
    max: usize,
    truncated: bool,
}

impl TextBuilder {
    fn new(max: usize) -> Self {
        TextBuilder {
            text: Text::default(),
            count: 0,
            max,
            truncated: false,
        }
    }

    fn push(&mut self, cp: u32) {
        if self.count >= self.max {
            self.truncated = true;
            return;
        }
        self.count += 1;
        let b = &mut self.text.bytes;
        if cp < 0x80 {
            b.push(cp as u8);
        } else if cp < 0x800 {
            b.push(0xC0 | (cp >> 6) as u8);
            b.push(0x80 | (cp & 0x3F) as u8);
        } else if cp < 0x10000 {
            if (0xD800..=0xDFFF).contains(&cp) {
                self.text.surrogates = true;
            }
            b.push(0xE0 | (cp >> 12) as u8);
            b.push(0x80 | ((cp >> 6) & 0x3F) as u8);
            b.push(0x80 | (cp & 0x3F) as u8);
        } else {
            b.push(0xF0 | (cp >> 18) as u8);
            b.push(0x80 | ((cp >> 12) & 0x3F) as u8);
            b.push(0x80 | ((cp >> 6) & 0x3F) as u8);
            b.push(0x80 | (cp & 0x3F) as u8);
        }
    }

    fn finish(self) -> (Text, bool) {
        (self.text, self.truncated)
    }
}

/// Is `b` valid UTF-8, optionally also accepting encoded surrogates (Python's
/// `surrogatepass` error handler)?
fn is_utf8(mut b: &[u8], surrogatepass: bool) -> bool {
    loop {
        match std::str::from_utf8(b) {
            Ok(_) => return true,
            Err(e) => {
                let i = e.valid_up_to();
                let r = &b[i..];
                if surrogatepass
                    && r.len() >= 3
                    && r[0] == 0xED
                    && (0xA0..=0xBF).contains(&r[1])
                    && (0x80..=0xBF).contains(&r[2])
                {
                    b = &r[3..];
                } else {
                    return false;
                }
            }
        }
    }
}

/// Decode UTF-8 (strict, or with `surrogatepass`) keeping the first `max` code points.
/// `None` if the bytes do not decode.
pub fn decode_utf8(b: &[u8], surrogatepass: bool, max: usize) -> Option<(Text, bool)> {
    if !is_utf8(b, surrogatepass) {
        return None;
    }
    // In valid (surrogate-tolerant) UTF-8 every byte outside 0x80..=0xBF starts a code point.
    let mut count = 0usize;
    let mut cut = b.len();
    let mut truncated = false;
    for (i, &byte) in b.iter().enumerate() {
        if !(0x80..=0xBF).contains(&byte) {
            if count == max {
                cut = i;
                truncated = true;
                break;
            }
            count += 1;
        }
    }
    let bytes = b[..cut].to_vec();
    let surrogates = surrogatepass && bytes.windows(2).any(|w| w[0] == 0xED && w[1] >= 0xA0);
    Some((Text { bytes, surrogates }, truncated))
}

/// Latin-1: every byte is the code point of the same value.
fn decode_latin1(b: &[u8], max: usize) -> (Text, bool) {
    let mut t = TextBuilder::new(max);
    for &byte in b.iter().take(max) {
        t.push(byte as u32);
    }
    let (text, _) = t.finish();
    (text, b.len() > max)
}

/// Text of a Python 2 `str` (STRING, BINSTRING, SHORT_BINSTRING). Loaders decode these with
/// the unpickler's `encoding` (ASCII by default, "utf-8" in torch, "latin1" in numpy for
/// Python 2 files); the analysis uses UTF-8 when the bytes are valid UTF-8, else Latin-1.
fn decode_legacy_str(b: &[u8], max: usize) -> (Text, bool) {
    match decode_utf8(b, false, max) {
        Some(t) => t,
        None => decode_latin1(b, max),
    }
}

/// A GLOBAL / INST line: GLOBAL decodes with strict UTF-8, INST with strict ASCII.
fn decode_line_name(b: &[u8], ascii_only: bool, max: usize) -> Option<(Text, bool)> {
    if ascii_only && !b.is_ascii() {
        return None;
    }
    decode_utf8(b, false, max)
}

/// CPython's `codecs.escape_decode` (the STRING opcode's unescaping), strict errors.
pub fn escape_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        if i >= s.len() {
            return None; // trailing backslash
        }
        let e = s[i];
        i += 1;
        match e {
            b'\n' => {}
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'a' => out.push(0x07),
            b'0'..=b'7' => {
                let mut v: u32 = (e - b'0') as u32;
                for _ in 0..2 {
                    if i < s.len() && (b'0'..=b'7').contains(&s[i]) {
                        v = (v << 3) + (s[i] - b'0') as u32;
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push((v & 0xFF) as u8);
            }
            b'x' => {
                if i + 1 < s.len() {
                    if let (Some(h), Some(l)) = (hex_value(s[i]), hex_value(s[i + 1])) {
                        out.push(((h << 4) | l) as u8);
                        i += 2;
                        continue;
                    }
                }
                return None; // invalid \x escape
            }
            _ => {
                // Unknown escape: keep the backslash, reread the character normally.
                out.push(b'\\');
                i -= 1;
            }
        }
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u32),
        b'a'..=b'f' => Some((b - b'a' + 10) as u32),
        b'A'..=b'F' => Some((b - b'A' + 10) as u32),
        _ => None,
    }
}

/// CPython's `raw-unicode-escape` decoder (the UNICODE opcode), keeping `max` code points.
pub fn raw_unicode_escape_decode(s: &[u8], max: usize) -> Option<(Text, bool)> {
    let mut t = TextBuilder::new(max);
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            t.push(c as u32);
            continue;
        }
        if i >= s.len() {
            t.push(b'\\' as u32);
            break;
        }
        let e = s[i];
        i += 1;
        let count = match e {
            b'u' => 4,
            b'U' => 8,
            _ => {
                t.push(b'\\' as u32);
                t.push(e as u32);
                continue;
            }
        };
        let mut cp: u32 = 0;
        for _ in 0..count {
            let d = hex_value(*s.get(i)?)?;
            cp = (cp << 4) | d;
            i += 1;
        }
        if cp > 0x10FFFF {
            return None;
        }
        t.push(cp);
    }
    Some(t.finish())
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[u8]) -> Facts {
        analyze(data, &Limits::default())
    }

    fn text(t: &Option<Text>) -> Option<&str> {
        t.as_ref().and_then(|t| t.as_str())
    }

    fn count(f: &Facts, name: &str) -> u64 {
        f.named_opcode_counts()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c)
            .unwrap_or(0)
    }

    /// SHORT_BINUNICODE of `s`.
    fn su(s: &str) -> Vec<u8> {
        let mut v = vec![op::SHORT_BINUNICODE, s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn opcode_table_has_68_opcodes() {
        assert_eq!(
            (0..=255u8).filter(|b| opcode_name(*b).is_some()).count(),
            68
        );
        assert_eq!(opcode_name(0x93), Some("STACK_GLOBAL"));
        assert_eq!(opcode_name(0x00), None);
    }

    #[test]
    fn protocol0_global_reduce() {
        // os.system("echo hi") as pickle.dumps(protocol=0) writes it.
        let data = b"cposix\nsystem\np0\n(Vecho hi\np1\ntp2\nRp3\n.";
        let f = run(data);
        assert_eq!(f.pickles.len(), 1);
        let p = &f.pickles[0];
        assert_eq!(p.status, Status::Stop);
        assert_eq!(p.end, Some(data.len()));
        assert_eq!(p.protocol, None);
        assert_eq!(f.globals.len(), 1);
        let g = &f.globals[0];
        assert_eq!(
            (text(&g.module), text(&g.name)),
            (Some("posix"), Some("system"))
        );
        assert_eq!(
            (g.offset, g.opcode, g.resolution, g.protocol),
            (0, op::GLOBAL, Resolution::Literal, 0)
        );
        assert_eq!(f.calls.len(), 1);
        assert_eq!(f.calls[0].opcode, op::REDUCE);
        assert_eq!(f.calls[0].target, Some(0));
        assert_eq!(
            f.calls[0].offset,
            data.iter().position(|&b| b == b'R').unwrap()
        );
        assert_eq!(count(&f, "PUT"), 4);
        assert_eq!(p.opcodes, 10);
        assert_eq!(f.trailing, None);
        assert_eq!(f.limit, None);
    }

    #[test]
    fn stack_global_literal_memo_computed() {
        // literal: \x80\x04 "os" "system" STACK_GLOBAL
        let mut d = vec![op::PROTO, 4];
        d.extend(su("os"));
        d.push(op::MEMOIZE);
        d.extend(su("system"));
        d.push(op::MEMOIZE);
        d.push(op::STACK_GLOBAL);
        // memo: fetch both strings back from the memo
        d.extend([op::BINGET, 0, op::BINGET, 1, op::STACK_GLOBAL]);
        // computed: module is the result of a REDUCE
        d.extend([op::BINGET, 0, op::EMPTY_TUPLE, op::REDUCE]);
        d.extend(su("x"));
        d.push(op::STACK_GLOBAL);
        d.extend([op::EMPTY_TUPLE, op::REDUCE, op::STOP]);
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        assert_eq!(f.pickles[0].protocol, Some(4));
        let res: Vec<_> = f.globals.iter().map(|g| g.resolution).collect();
        assert_eq!(
            res,
            vec![Resolution::Literal, Resolution::Memo, Resolution::Computed]
        );
        assert_eq!(text(&f.globals[1].module), Some("os"));
        assert_eq!(text(&f.globals[1].name), Some("system"));
        assert_eq!(f.globals[2].module, None);
        assert_eq!(f.globals[2].name, None);
        assert_eq!(f.globals[0].protocol, 4);
        // first REDUCE calls memo[0] which is the string "os", not a global
        assert_eq!(f.calls[0].target, None);
        assert_eq!(f.calls[1].target, Some(2));
    }

    #[test]
    fn memoized_global_keeps_its_index() {
        let mut d = vec![op::PROTO, 2, op::GLOBAL];
        d.extend(b"builtins\neval\n");
        d.extend([op::BINPUT, 7, op::POP, op::BINGET, 7]);
        d.extend(su("1"));
        d.extend([op::TUPLE1, op::REDUCE, op::STOP]);
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop);
        assert_eq!(f.calls.len(), 1);
        assert_eq!(f.calls[0].target, Some(0));
        assert_eq!(f.globals[0].protocol, 2);
    }

    #[test]
    fn inst_obj_newobj_build() {
        // INST: mark, args, "i" module\nname\n
        let mut d = vec![op::MARK];
        d.extend(su("arg"));
        d.extend(b"isubprocess\nPopen\n");
        // BUILD on the INST result
        d.extend([op::EMPTY_DICT, op::BUILD, op::POP]);
        // OBJ: mark, class, args
        d.push(op::MARK);
        d.extend(b"cbuiltins\nlist\n");
        d.extend([op::OBJ, op::POP]);
        // NEWOBJ
        d.extend(b"ccollections\nOrderedDict\n");
        d.extend([op::EMPTY_TUPLE, op::NEWOBJ]);
        d.extend([op::NONE, op::BUILD, op::STOP]);
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        let ops: Vec<(u8, Option<usize>)> = f.calls.iter().map(|c| (c.opcode, c.target)).collect();
        assert_eq!(
            ops,
            vec![
                (op::INST, Some(0)),
                (op::BUILD, Some(0)),
                (op::OBJ, Some(1)),
                (op::NEWOBJ, Some(2)),
                (op::BUILD, Some(2))
            ]
        );
        assert_eq!(f.globals[0].opcode, op::INST);
        assert_eq!(f.calls[0].offset, f.globals[0].offset);
    }

    #[test]
    fn filling_a_global_container_is_a_call() {
        // os.environ["X"] = "1" via SETITEM; a plain dict is not recorded.
        let f = run(b"cos\nenviron\nVX\nV1\ns}VY\nV2\ns0(VZ\nV3\nu(NeNa.");
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        let calls: Vec<(u8, Option<usize>)> =
            f.calls.iter().map(|c| (c.opcode, c.target)).collect();
        assert_eq!(
            calls,
            vec![
                (op::SETITEM, Some(0)),
                (op::SETITEMS, Some(0)),
                (op::APPENDS, Some(0)),
                (op::APPEND, Some(0))
            ]
        );
    }

    #[test]
    fn ext_codes_and_persistent_ids() {
        let d = [
            op::EXT1,
            5,
            op::EXT2,
            0x34,
            0x12,
            op::EXT4,
            1,
            0,
            0,
            0x80,
            op::POP,
            op::POP,
            op::POP,
            op::NONE,
            op::BINPERSID,
            b'P',
            b'x',
            b'\n',
            op::POP,
            op::STOP,
        ];
        let f = run(&d);
        // EXT4 code is signed: 0x80000001 is negative -> error
        assert_eq!(f.pickles[0].status, Status::Error);
        assert_eq!(f.pickles[0].error, Some(ErrorCode::BadArgument));
        assert_eq!(f.pickles[0].error_offset, Some(5));
        let codes: Vec<i64> = f.ext.iter().map(|e| e.code).collect();
        assert_eq!(codes, vec![5, 0x1234]);

        let d = [
            op::EXT4,
            0x10,
            0,
            0,
            0,
            op::NONE,
            op::BINPERSID,
            b'P',
            b'x',
            b'\n',
            op::STOP,
        ];
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop);
        assert_eq!(f.ext[0].code, 16);
        let p: Vec<(usize, u8)> = f
            .persistent_ids
            .iter()
            .map(|p| (p.offset, p.opcode))
            .collect();
        assert_eq!(p, vec![(6, op::BINPERSID), (7, op::PERSID)]);
    }

    #[test]
    fn ext_code_zero_is_an_error() {
        let f = run(&[op::EXT1, 0, op::STOP]);
        assert_eq!(f.pickles[0].error, Some(ErrorCode::BadArgument));
        assert!(f.ext.is_empty());
    }

    #[test]
    fn truncation_and_garbage() {
        // Declared length beyond the data: truncated, no allocation.
        let f = run(&[
            op::BINUNICODE8,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x7f,
            b'a',
        ]);
        assert_eq!(f.pickles[0].status, Status::Truncated);
        assert_eq!(f.pickles[0].error, Some(ErrorCode::Truncated));
        assert_eq!(f.pickles[0].error_offset, Some(0));
        // Data ends where an opcode is expected.
        let f = run(&[op::PROTO, 2, op::NONE]);
        assert_eq!(f.pickles[0].status, Status::Truncated);
        assert_eq!(f.pickles[0].error_offset, Some(3));
        assert_eq!(f.pickles[0].opcodes, 2);
        // A line without newline.
        let f = run(b"cos\nsystem");
        assert_eq!(f.pickles[0].status, Status::Truncated);
        assert!(f.globals.is_empty());
        // Invalid opcode after a call: the call is kept.
        let f = run(b"cos\nsystem\n(S'ls'\ntR\xff");
        assert_eq!(f.pickles[0].status, Status::Error);
        assert_eq!(f.pickles[0].error, Some(ErrorCode::InvalidOpcode));
        assert_eq!(f.pickles[0].error_offset, Some(20));
        assert_eq!(f.calls.len(), 1);
        // Empty input.
        let f = run(b"");
        assert_eq!(f.pickles.len(), 1);
        assert_eq!(f.pickles[0].status, Status::Truncated);
        assert_eq!(f.pickles[0].error_offset, Some(0));
    }

    #[test]
    fn several_pickles_then_trailing() {
        let mut d = vec![op::PROTO, 2, op::NONE, op::STOP];
        d.extend([op::PROTO, 2, op::BININT1, 3, op::STOP]);
        d.extend([0x01, 0x00, 0xff]);
        let f = run(&d);
        assert_eq!(f.pickles.len(), 2);
        assert_eq!((f.pickles[1].start, f.pickles[1].end), (4, Some(9)));
        assert_eq!(
            f.trailing,
            Some(Trailing {
                offset: 9,
                length: 3
            })
        );
        assert_eq!(count(&f, "PROTO"), 2);
        assert_eq!(count(&f, "STOP"), 2);
        // A second "pickle" that starts with a valid opcode but fails is a pickle.
        let d = [op::NONE, op::STOP, op::NONE, 0xff];
        let f = run(&d);
        assert_eq!(f.pickles.len(), 2);
        assert_eq!(f.pickles[1].status, Status::Error);
        assert_eq!(f.trailing, None);
    }

    #[test]
    fn limits() {
        let lim = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l
        };
        let f = analyze(
            &[op::NONE, op::POP, op::NONE, op::POP, op::NONE, op::STOP],
            &lim(|l| l.max_opcodes = 3),
        );
        assert_eq!(f.limit, Some(LimitKind::Opcodes));
        assert_eq!(f.pickles[0].status, Status::Limit);
        assert_eq!(f.pickles[0].opcodes, 3);
        assert_eq!(f.pickles[0].error_offset, Some(3));
        assert_eq!(f.pickles[0].error, None);

        let f = analyze(
            &[op::MARK, op::MARK, op::NONE, op::NONE],
            &lim(|l| l.max_stack = 3),
        );
        assert_eq!(f.limit, Some(LimitKind::Stack));
        assert_eq!(f.pickles[0].error_offset, Some(3));

        let f = analyze(
            &[
                op::NONE,
                op::MEMOIZE,
                op::MEMOIZE,
                op::BINPUT,
                0,
                op::MEMOIZE,
                op::STOP,
            ],
            &lim(|l| l.max_memo = 2),
        );
        assert_eq!(f.limit, Some(LimitKind::Memo));
        assert_eq!(f.pickles[0].error_offset, Some(5));

        // INST adds two facts at once: the limit is checked after the opcode.
        let f = analyze(b"cos\nsystem\n(ios\nsystem\nN.", &lim(|l| l.max_facts = 2));
        assert_eq!(f.limit, Some(LimitKind::Facts));
        assert_eq!((f.globals.len(), f.calls.len()), (2, 1));
        assert_eq!(f.pickles[0].error_offset, Some(12));

        let f = analyze(
            &[op::NONE, op::STOP, op::NONE, op::STOP, op::NONE, op::STOP],
            &lim(|l| l.max_pickles = 2),
        );
        assert_eq!(f.limit, Some(LimitKind::Pickles));
        assert_eq!(f.pickles.len(), 2);

        let s = "aé€😀bc";
        let mut d = vec![op::SHORT_BINUNICODE, s.len() as u8];
        d.extend(s.as_bytes());
        d.extend(su("n"));
        d.extend([op::STACK_GLOBAL, op::STOP]);
        let f = analyze(&d, &lim(|l| l.max_string = 4));
        let g = &f.globals[0];
        assert_eq!(text(&g.module), Some("aé€😀"));
        assert!(g.truncated);
    }

    #[test]
    fn stack_and_mark_errors() {
        assert_eq!(
            run(&[op::REDUCE]).pickles[0].error,
            Some(ErrorCode::StackUnderflow)
        );
        assert_eq!(
            run(&[op::TUPLE]).pickles[0].error,
            Some(ErrorCode::MarkMissing)
        );
        assert_eq!(
            run(&[op::BINGET, 3]).pickles[0].error,
            Some(ErrorCode::MemoMissing)
        );
        assert_eq!(
            run(&[op::STOP]).pickles[0].error,
            Some(ErrorCode::StackUnderflow)
        );
        // Items below a mark are out of reach.
        assert_eq!(
            run(&[op::NONE, op::MARK, op::STOP]).pickles[0].error,
            Some(ErrorCode::StackUnderflow)
        );
        // POP of an empty frame pops the mark.
        let f = run(&[op::NONE, op::MARK, op::POP, op::STOP]);
        assert_eq!(f.pickles[0].status, Status::Stop);
        assert_eq!(
            run(&[op::POP]).pickles[0].error,
            Some(ErrorCode::StackUnderflow)
        );
        assert_eq!(
            run(&[op::MARK, op::NONE, op::DICT]).pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
        assert_eq!(
            run(&[op::MARK, op::OBJ]).pickles[0].error,
            Some(ErrorCode::StackUnderflow)
        );
        assert_eq!(
            run(b"T\xff\xff\xff\xff").pickles[0].error,
            Some(ErrorCode::NegativeLength)
        );
        assert_eq!(
            run(&[op::PROTO, 6]).pickles[0].error,
            Some(ErrorCode::UnsupportedProtocol)
        );
        // STACK_GLOBAL with a single operand records nothing.
        let mut d = su("os");
        d.push(op::STACK_GLOBAL);
        let f = run(&d);
        assert_eq!(f.pickles[0].error, Some(ErrorCode::StackUnderflow));
        assert!(f.globals.is_empty());
        // INST without a mark records the import, not the call.
        let f = run(b"ios\nsystem\n");
        assert_eq!(f.pickles[0].error, Some(ErrorCode::MarkMissing));
        assert_eq!(f.globals.len(), 1);
        assert!(f.calls.is_empty());
    }

    #[test]
    fn text_opcodes_protocol0() {
        let f = run(b"I42\nI01\nL12L\nF-1.5e3\nS'a\\x41\\101\\n'\np12\n0g12\nVo\\u0073\nNNN.");
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        // Memo string fed to STACK_GLOBAL via GET: decimal keys with spaces/underscores.
        let f = run(b"\x80\x04Vbuilt\\u0069ns\np1_0\nVeval\np 2 \n0g+10\ng2\n\x93.");
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        let g = &f.globals[0];
        assert_eq!(
            (text(&g.module), text(&g.name), g.resolution),
            (Some("builtins"), Some("eval"), Resolution::Memo)
        );
        assert_eq!(
            run(b"S'abc\"\n").pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
        assert_eq!(
            run(b"S'\\x4'\n").pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
        assert_eq!(
            run(b"V\\u12\n").pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
        assert_eq!(run(b"I\n").pickles[0].error, Some(ErrorCode::BadArgument));
        assert_eq!(
            run(b"Np-1\n").pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
        assert_eq!(
            run(b"Ng-1\n").pickles[0].error,
            Some(ErrorCode::MemoMissing)
        );
        assert_eq!(
            run(b"Np1__2\n").pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
        assert_eq!(
            run(b"Np99999999999999999999\n").pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
        assert_eq!(
            run(b"c\xff\nx\n").pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
        assert_eq!(
            run(b"(i\xc3\xa9\nx\n").pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
        assert_eq!(
            run(b"P\xff\n").pickles[0].error,
            Some(ErrorCode::BadArgument)
        );
    }

    #[test]
    fn frames_are_transparent_but_checked() {
        let mut d = vec![op::PROTO, 4, op::FRAME];
        d.extend(3u64.to_le_bytes());
        d.extend([op::NONE, op::STOP]);
        // frame says 3 bytes but only 2 remain
        assert_eq!(run(&d).pickles[0].status, Status::Truncated);
        d.push(0x05);
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop);
        // the frame covers STOP and one more byte
        assert_eq!(f.pickles[0].end, Some(d.len() - 1));
        assert_eq!(f.pickles[0].frame_end, Some(d.len()));
        assert_eq!(
            f.trailing,
            Some(Trailing {
                offset: d.len() - 1,
                length: 1
            })
        );
    }

    #[test]
    fn frame_ending_at_stop_has_no_frame_end() {
        let mut d = vec![op::PROTO, 4, op::FRAME];
        d.extend(2u64.to_le_bytes());
        d.extend([op::NONE, op::STOP]);
        let f = run(&d);
        assert_eq!(f.pickles[0].end, Some(d.len()));
        assert_eq!(f.pickles[0].frame_end, None);
    }

    #[test]
    fn memo_dense_and_sparse_keys() {
        let mut m = Memo::default();
        m.insert(5000, Val::Global(7)); // far beyond the entries: sparse
        m.insert(u32::MAX as u64, Val::Global(8));
        assert!(m.dense.len() < 5000);
        for k in 0..4500u64 {
            m.insert(k, Val::Other);
        }
        assert!(m.dense.len() > 5000, "dense grew over the sparse key");
        assert!(matches!(m.get(5000), Some(Val::Global(7))));
        assert!(matches!(m.get(u32::MAX as u64), Some(Val::Global(8))));
        assert_eq!(m.len(), 4502);
        m.insert(5000, Val::Other); // overwrite: no new entry
        m.insert(0, Val::Other);
        assert_eq!(m.len(), 4502);
        assert!(m.get(4999).is_none());
        assert!(m.dense.len() <= 4 * m.len() + 2048);
        // A hostile key does not allocate by its value.
        let mut m = Memo::default();
        m.insert(1 << 40, Val::Other);
        assert!(m.dense.is_empty());
    }

    #[test]
    fn decoders() {
        assert_eq!(
            escape_decode(b"a\\x41\\101\\777\\q\\08"),
            Some(b"aAA\xff\\q\x008".to_vec())
        );
        assert_eq!(escape_decode(b"\\"), None);
        assert_eq!(escape_decode(b"\\x4"), None);
        assert_eq!(escape_decode(b"a\\\nb"), Some(b"ab".to_vec()));
        let (t, tr) = raw_unicode_escape_decode(b"\\\\u0041\\u00e9\\U0001F600\xe9\\", 100).unwrap();
        assert_eq!(t.as_str(), Some("\\\\u0041é😀é\\"));
        assert!(!tr);
        assert!(raw_unicode_escape_decode(b"\\U00110000", 100).is_none());
        let (t, _) = raw_unicode_escape_decode(b"\\ud800", 100).unwrap();
        assert!(t.has_surrogates());
        assert_eq!(t.as_bytes(), b"\xed\xa0\x80");
        // surrogatepass: encoded surrogates pass, other invalid UTF-8 does not
        assert!(decode_utf8(b"a\xed\xa0\x80b", true, 10)
            .unwrap()
            .0
            .has_surrogates());
        assert!(decode_utf8(b"a\xed\xa0\x80b", false, 10).is_none());
        assert!(decode_utf8(b"\xc0\x80", true, 10).is_none());
        assert!(decode_utf8(b"\xed\xa0", true, 10).is_none());
        let (t, tr) = decode_utf8("héllo".as_bytes(), false, 2).unwrap();
        assert_eq!((t.as_str(), tr), (Some("hé"), true));
        let (t, tr) = decode_legacy_str(b"caf\xe9", 10);
        assert_eq!((t.as_str(), tr), (Some("café"), false));
        assert!(matches!(parse_memo_key(b" 1_000 "), MemoKey::Key(1000)));
        assert!(matches!(parse_memo_key(b"-0"), MemoKey::Key(0)));
        assert!(matches!(parse_memo_key(b"_1"), MemoKey::Invalid));
        assert!(matches!(parse_memo_key(b"1_"), MemoKey::Invalid));
        assert!(matches!(parse_memo_key(b"0x1"), MemoKey::Invalid));
        assert!(matches!(parse_memo_key(b"-5"), MemoKey::Negative));
    }

    #[test]
    fn never_panics_on_prefixes_and_mutations() {
        let base: &[u8] = b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03(K\x01K\x02eJ\x01\x00\x00\x00\x8c\x01a\x94\x93\x8a\x01\x05}\x94b.";
        for cut in 0..=base.len() {
            let f = run(&base[..cut]);
            assert!(!f.pickles.is_empty());
        }
        let full = run(base);
        assert_eq!(full.pickles[0].status, Status::Stop);
        // Flip every byte to every opcode value: must never panic.
        for i in 0..base.len() {
            for b in (0x28u8..=0x98).step_by(3) {
                let mut d = base.to_vec();
                d[i] = b;
                let _ = run(&d);
            }
        }
    }
}
