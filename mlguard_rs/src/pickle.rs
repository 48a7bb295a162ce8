//! Pickle kernel: a symbolic, non-executing model of CPython's unpickler.
//!
//! [`analyze`] walks a byte stream the way `pickle.load` would (protocols 0-5, all 68 opcodes
//! that `pickletools` knows), but instead of building objects it keeps a *symbolic* stack and
//! memo: strings are spans of the input (decoded only when an import needs their text),
//! imported globals keep their index in [`Facts::globals`], call results remember which global
//! produced them, and small literals (ints, tuples, the dicts and dtypes joblib writes) are
//! tracked just far enough to follow joblib's array data. It records facts only (imports, call
//! sites with their literal and global arguments, extension codes, persistent ids, framing
//! violations, joblib raw spans, opcode counts, where and why parsing stopped); deciding what
//! is dangerous is the Python policy's job.
//!
//! Framing follows CPython 3.11: the C unpickler reading bytes treats frames as transparent,
//! the pure-Python `_Unframer` (which joblib uses) rejects reads that cross a frame's end and
//! FRAMEs inside an unfinished frame, and the C unpickler reading a file drops buffered bytes
//! when such a read happens. The analysis follows the bytes contiguously (the C view) and
//! records every place where the loaders disagree as a [`FrameViolation`].
//!
//! The pure-Python twin `mlguard/engine/pure/pickle.py` implements the same model and must
//! return identical facts; `tests/test_engine_pickle.py` checks both against each other.
//!
//! Hostile input: no recursion beyond one nested joblib pickle, no allocation by a declared
//! length (every length is checked against the bytes left first), bounded opcode count / memo
//! size / stack depth / number of pickles / facts / tracked literals, and string operands
//! keep at most `max_string` characters.

use std::collections::{HashMap, HashSet};

/// Highest pickle protocol CPython's unpickler accepts (`pickle.HIGHEST_PROTOCOL`).
pub const HIGHEST_PROTOCOL: u8 = 5;

/// Arguments (string/bytes literals and imported globals) reported per call, at most.
pub const MAX_ARGS: usize = 8;

/// Items of a tuple kept for evaluation and argument facts; later items are not tracked.
pub const TUPLE_KEEP: usize = 64;

/// Ints `v` with `-TRACKED_INT <= v < TRACKED_INT` are tracked (they fit a memo [`Slot`]);
/// larger ones are `Other`, untracked. Only small ints matter (falsiness, joblib shapes).
pub const TRACKED_INT: i64 = 1 << 59;

/// Tuple items tracked per pickle, at most; later tuples are not tracked (fail closed).
pub const MAX_TUPLE_ITEMS: usize = 1 << 20;

/// Dicts whose joblib-relevant keys are remembered per pickle, at most.
pub const MAX_DICT_INFOS: usize = 1 << 16;

/// joblib array wrappers and numpy dtypes tracked per pickle, at most.
pub const MAX_OBJS: usize = 1 << 20;

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
pub const fn opcode_name(byte: u8) -> Option<&'static str> {
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

const fn opcode_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = opcode_name(i as u8).is_some();
        i += 1;
    }
    t
}

/// `VALID[b]`: is byte `b` an opcode?
static VALID: [bool; 256] = opcode_table();

/// Bounds on the work done for one input. Mirrors `mlguard.engine.PickleLimits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Opcodes executed, summed over all pickles of the input.
    pub max_opcodes: u64,
    /// Memo values kept in one pickle before it keeps only globals (a budget, not a stop: see
    /// [`Memo`]).
    pub max_memo: u64,
    /// Stack items plus open marks in one pickle.
    pub max_stack: u64,
    /// Pickles parsed (back to back, or nested in joblib object arrays).
    pub max_pickles: u64,
    /// Characters kept of a string operand (longer module/name are cut, `truncated` set).
    pub max_string: u64,
    /// Facts recorded (globals + calls + ext + persistent ids + frame violations + raw
    /// spans): bounds the output's size (in Python ~530 bytes a fact).
    pub max_facts: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_opcodes: 100_000_000,
            max_memo: 1_000_000,
            max_stack: 1_000_000,
            max_pickles: 64,
            max_string: 1024,
            max_facts: 100_000,
        }
    }
}

/// How the analysis models the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Follow `joblib.load`: after the BUILD of a `NumpyArrayWrapper`, skip the raw array
    /// bytes (or analyse the nested pickle of an object array) that joblib reads from the
    /// file. With `false` the stream is read as `pickle.load` reads it.
    pub follow_joblib: bool,
    /// Aggregate repeated facts (see [`CallFact::count`] and [`PersIdFact::count`]): calls are
    /// grouped by (pickle, opcode, target) and persistent ids by (pickle, opcode), each group
    /// reported once, where its first member would be, with the first member's offset (and
    /// arguments) and the group's size. A group counts once toward `max_facts`, so where the
    /// uncompacted analysis stops at that limit this one may go further; otherwise limits,
    /// statuses and all other facts are those of the uncompacted analysis.
    pub compact: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            follow_joblib: true,
            compact: false,
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
    /// The data ends inside an opcode's argument, joblib array data, or before STOP.
    Truncated,
    /// An opcode needs more stack items (above the innermost mark) than there are.
    StackUnderflow,
    /// An opcode needs a MARK and there is none.
    MarkMissing,
    /// GET of a memo key that was never stored (in this pickle).
    MemoMissing,
    /// A malformed operand: number text, quoting, escapes, undecodable text, an odd
    /// DICT/SETITEMS item count, an EXT code <= 0, a memo key out of range, a FRAME length
    /// above 2**63-1.
    BadArgument,
    /// A signed length prefix (BINSTRING, LONG4) is negative.
    NegativeLength,
    /// PROTO names a protocol above [`HIGHEST_PROTOCOL`].
    UnsupportedProtocol,
    /// joblib would read array data after this BUILD but its length (or whether it is a
    /// nested pickle) cannot be determined from the stream.
    JoblibArrayUnknown,
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
            ErrorCode::JoblibArrayUnknown => "joblib-array-unknown",
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// Where CPython's loaders disagree about a pickle's framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameViolationKind {
    /// A read (an opcode's argument, its length prefix, or a text line) starts inside the
    /// current frame and ends after it. The pure-Python unpickler raises; the C unpickler
    /// reading bytes is not affected; the C unpickler reading a file may drop the frame's
    /// last bytes and read the operand from after the frame.
    CrossesFrameEnd,
    /// A FRAME while the current frame still has unread bytes. The pure-Python unpickler
    /// raises; the C unpickler accepts it (reading a file it may skip bytes).
    FrameInFrame,
    /// A FRAME announces more bytes than the data holds. The C unpickler fails ("pickle data
    /// was truncated"); the pure-Python unpickler goes on with the shorter frame.
    FrameBeyondData,
    /// STOP inside a frame that continues after it (`frame_end`); offset is that FRAME.
    FramePastStop,
    /// joblib array data (or its nested pickle) follows a BUILD inside a frame that still has
    /// unread bytes: joblib reads it from after the frame; offset is the BUILD.
    JoblibDataInFrame,
}

impl FrameViolationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameViolationKind::CrossesFrameEnd => "crosses-frame-end",
            FrameViolationKind::FrameInFrame => "frame-in-frame",
            FrameViolationKind::FrameBeyondData => "frame-beyond-data",
            FrameViolationKind::FramePastStop => "frame-past-stop",
            FrameViolationKind::JoblibDataInFrame => "joblib-data-in-frame",
        }
    }
}

/// One framing violation of a pickle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameViolation {
    /// Offset of the opcode concerned (see [`FrameViolationKind`]).
    pub offset: usize,
    pub kind: FrameViolationKind,
}

/// How the bytes of a literal call argument decode to its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// UTF-8 text (BINUNICODE, SHORT_BINUNICODE, BINUNICODE8; `surrogatepass`).
    Str,
    /// A Python 2 `str` (BINSTRING, SHORT_BINSTRING): raw bytes the loader decodes.
    StrLegacy,
    /// STRING: the text between the quotes, to unescape with `codecs.escape_decode`.
    StrEscaped,
    /// UNICODE: the line, to decode with `raw-unicode-escape`.
    StrRawUnicodeEscape,
    /// BINBYTES, SHORT_BINBYTES, BINBYTES8: the bytes themselves.
    Bytes,
    /// BYTEARRAY8: the bytes of the bytearray.
    Bytearray,
}

impl ArgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArgKind::Str => "str",
            ArgKind::StrLegacy => "str-legacy",
            ArgKind::StrEscaped => "str-escaped",
            ArgKind::StrRawUnicodeEscape => "str-raw-unicode-escape",
            ArgKind::Bytes => "bytes",
            ArgKind::Bytearray => "bytearray",
        }
    }
}

/// What a reported call argument is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgValue {
    /// A string or bytes literal: its payload is `data[offset..offset + length]`, to decode as
    /// `kind` says.
    Literal {
        kind: ArgKind,
        offset: usize,
        length: usize,
    },
    /// An imported object (the value a GLOBAL or STACK_GLOBAL pushed, directly or fetched from
    /// the memo): index into [`Facts::globals`].
    Global(usize),
}

/// A string/bytes literal or an imported global passed to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgFact {
    /// Position in the call's argument tuple (see the facade docs).
    pub index: usize,
    pub value: ArgValue,
}

impl ArgFact {
    /// The facade's `kind`: an [`ArgKind`] name, or `"global"`.
    pub fn kind_str(&self) -> &'static str {
        match self.value {
            ArgValue::Literal { kind, .. } => kind.as_str(),
            ArgValue::Global(_) => "global",
        }
    }
}

/// Bytes of the data that are not opcodes and that a loader reads raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawSpan {
    pub pickle: usize,
    /// First byte (joblib: the padding-length byte).
    pub offset: usize,
    pub length: usize,
    /// Bytes before the array data (padding-length byte and padding; 0 without alignment).
    pub padding: usize,
}

impl RawSpan {
    pub fn kind(&self) -> &'static str {
        "joblib-array"
    }
}

/// Text as Python sees it: a sequence of code points, possibly including lone surrogates
/// (BINUNICODE is decoded with `surrogatepass`, UNICODE with `raw-unicode-escape`).
/// Stored as UTF-8 where a surrogate is encoded like any other code point (3 bytes
/// `ED A0..BF 80..BF`), i.e. exactly what Python's `str.encode("utf-8", "surrogatepass")` gives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
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
    /// For a nested pickle (a joblib object array): the index of the pickle whose BUILD read
    /// it. `None` for the pickles of the data itself.
    pub parent: Option<usize>,
    /// Offset of its first opcode.
    pub start: usize,
    /// Offset just past its STOP opcode, `None` unless `status` is `Stop`. The next pickle
    /// is analysed from here (where `pickle.load` on a buffered file leaves the file).
    pub end: Option<usize>,
    /// When the pure-Python unpickler's file position after STOP is beyond `end` (a frame
    /// reaching past STOP): that position. `None` otherwise.
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
    /// Framing violations, in the order they were found.
    pub frame_violations: Vec<FrameViolation>,
    /// PUTs whose value the memo dropped past its budget (`max_memo`); GETs of them read as
    /// unknown.
    pub memo_dropped: u64,
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
    /// Imports this fact stands for: 1, except with [`Options::compact`], where the imports of
    /// one pickle with the same opcode, module, name, resolution, protocol and truncation are one
    /// fact (`offset` is the first one's).
    pub count: u64,
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
    /// String and bytes literals and imported globals among the direct arguments, in order
    /// (at most [`MAX_ARGS`]).
    pub args: Vec<ArgFact>,
    /// Call sites this fact stands for: 1, except with [`Options::compact`], where the calls
    /// of one pickle with the same opcode and target are one fact (`offset` and `args` are the
    /// first one's).
    pub count: u64,
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
    /// Persistent ids this fact stands for: 1, except with [`Options::compact`], where those
    /// of one pickle with the same opcode are one fact (`offset` is the first one's).
    pub count: u64,
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
    /// joblib array data skipped (kind "joblib-array").
    pub raw_spans: Vec<RawSpan>,
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
            raw_spans: Vec::new(),
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
/// limit is hit. Never panics, never executes anything. Follows joblib (see [`Options`]).
pub fn analyze(data: &[u8], limits: &Limits) -> Facts {
    analyze_with(data, limits, &Options::default(), None)
}

/// [`analyze`] with options and an optional progress hook: `progress(pos)` is called now and
/// then with an offset such that the bytes before it will rarely be read again (the file
/// entry point releases those pages). Bytes before `pos` may still be read afterwards.
pub fn analyze_with(
    data: &[u8],
    limits: &Limits,
    opts: &Options,
    progress: Option<&mut dyn FnMut(usize)>,
) -> Facts {
    let mut ctx = Ctx::new(*limits, opts.compact, progress);
    let mut pos = 0usize;
    loop {
        if !ctx.facts.pickles.is_empty() {
            if pos >= data.len() {
                break;
            }
            if !VALID[data[pos] as usize] {
                ctx.facts.trailing = Some(Trailing {
                    offset: pos,
                    length: data.len() - pos,
                });
                break;
            }
        }
        if ctx.facts.pickles.len() as u64 >= limits.max_pickles {
            ctx.facts.limit = Some(LimitKind::Pickles);
            break;
        }
        let (info, _) = run_pickle(data, pos, None, opts.follow_joblib, &mut ctx);
        match info {
            Some(e) => pos = e,
            None => break,
        }
    }
    ctx.facts
}

/// Run one pickle from `start`; returns (its end if it reached STOP, where the pure-Python
/// unpickler left the file).
fn run_pickle(
    data: &[u8],
    start: usize,
    parent: Option<usize>,
    joblib: bool,
    ctx: &mut Ctx,
) -> (Option<usize>, usize) {
    let index = ctx.facts.pickles.len();
    ctx.facts.pickles.push(PickleInfo {
        index,
        parent,
        start,
        end: None,
        frame_end: None,
        protocol: None,
        opcodes: 0,
        status: Status::Truncated,
        error: None,
        error_offset: None,
        frame_violations: Vec::new(),
        memo_dropped: 0,
    });
    let limits = ctx.limits;
    let mut m = Machine::new(data, start, index, parent, joblib, &limits);
    let info = m.run(ctx);
    Scratch::give_back(m);
    let end = info.end;
    let file_pos = info.frame_end.or(info.end).unwrap_or(start);
    ctx.facts.pickles[index] = info;
    (end, file_pos)
}

// ---------------------------------------------------------------------------------------
// Symbolic values
// ---------------------------------------------------------------------------------------

/// How the payload of a string or bytes value decodes (decided when it is pushed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum SKind {
    /// BINUNICODE family: UTF-8 with surrogatepass (validated).
    Utf8,
    /// BINSTRING family, valid UTF-8.
    LegacyUtf8,
    /// BINSTRING family, not UTF-8: Latin-1.
    LegacyLatin1,
    /// STRING whose unescaped bytes are UTF-8.
    EscapedUtf8,
    /// STRING whose unescaped bytes are not UTF-8: Latin-1.
    EscapedLatin1,
    /// UNICODE (validated raw-unicode-escape).
    RawUnicodeEscape,
    Bytes,
    Bytearray,
}

impl SKind {
    /// The kind whose discriminant is `bits & 7` (all eight are used).
    fn from_bits(bits: u64) -> SKind {
        match bits & 7 {
            0 => SKind::Utf8,
            1 => SKind::LegacyUtf8,
            2 => SKind::LegacyLatin1,
            3 => SKind::EscapedUtf8,
            4 => SKind::EscapedLatin1,
            5 => SKind::RawUnicodeEscape,
            6 => SKind::Bytes,
            _ => SKind::Bytearray,
        }
    }

    fn is_str(self) -> bool {
        (self as u8) < (SKind::Bytes as u8)
    }
    fn arg_kind(self) -> ArgKind {
        match self {
            SKind::Utf8 => ArgKind::Str,
            SKind::LegacyUtf8 | SKind::LegacyLatin1 => ArgKind::StrLegacy,
            SKind::EscapedUtf8 | SKind::EscapedLatin1 => ArgKind::StrEscaped,
            SKind::RawUnicodeEscape => ArgKind::StrRawUnicodeEscape,
            SKind::Bytes => ArgKind::Bytes,
            SKind::Bytearray => ArgKind::Bytearray,
        }
    }
}

/// `Val::Result::obj` when the result is neither a tracked object nor possibly a wrapper.
const NO_OBJ: u32 = u32::MAX;
/// `Val::Result::obj` when the result might be a joblib wrapper (an unknown callable's).
const MAYBE_OBJ: u32 = u32::MAX - 1;
/// `Val::Result::target` when the callable is not a global.
const NO_GLOBAL: u32 = u32::MAX;

/// What makes two imports of one pickle the same fact in compact mode: opcode, module, name,
/// resolution, protocol, truncation.
type GlobalKey = (u8, Option<Text>, Option<Text>, Resolution, u8, bool);

/// Compact mode: no group of calls / persistent ids yet.
const NO_GROUP: u32 = u32::MAX;
/// Opcodes that record calls: REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX, BUILD, APPEND, APPENDS,
/// SETITEM, SETITEMS, ADDITEMS.
const CALL_SLOTS: usize = 11;

/// Position of a call opcode among [`CALL_SLOTS`].
fn call_slot(opcode: u8) -> usize {
    use op::*;
    match opcode {
        REDUCE => 0,
        INST => 1,
        OBJ => 2,
        NEWOBJ => 3,
        NEWOBJ_EX => 4,
        BUILD => 5,
        APPEND => 6,
        APPENDS => 7,
        SETITEM => 8,
        SETITEMS => 9,
        _ => 10, // ADDITEMS
    }
}

/// A symbolic stack value (16 bytes, Copy; the memo packs it into a [`Slot`]): strings are
/// spans of the data, tuples indices into the pickle's [`Tuples`].
#[derive(Clone, Copy, Debug)]
enum Val {
    /// A value that is certainly not a str and not tracked (numbers, lists, sets, ...).
    Other,
    /// Anything (persistent ids, extension objects, untracked tuples).
    Unknown,
    None,
    Bool(bool),
    Int(i64),
    /// A str or bytes literal: `off`/`len` locate its payload in the data.
    Str {
        kind: SKind,
        memo: bool,
        len_hi: u16,
        len_lo: u32,
        off: u64,
    },
    /// An imported object: index into `Facts::globals`.
    Global(u32),
    /// The result of a call: the callable's global index (or NO_GLOBAL) and a tracked object.
    Result {
        target: u32,
        obj: u32,
    },
    /// A dict (joblib mode only), by identity.
    Dict(u64),
    EmptyTuple,
    /// A tracked tuple: index into `Tuples::hdrs`.
    Tuple(u32),
}

/// The tuples of one pickle: each keeps its length and its first `TUPLE_KEEP` items, in one
/// arena that only grows (at most `MAX_TUPLE_ITEMS` items; then tuples are not tracked).
#[derive(Default)]
struct Tuples {
    /// (first item in `items`, items kept, length)
    hdrs: Vec<(u32, u32, usize)>,
    items: Vec<Val>,
}

impl Tuples {
    /// A tuple of `items` (as TUPLE/TUPLE1/2/3 build it): untracked when nothing in it
    /// matters (`Other`, or `Unknown` if it may hold call results) or when the budget is
    /// spent (`Unknown`).
    #[inline(always)]
    fn make(&mut self, items: &[Val]) -> Val {
        if items.is_empty() {
            return Val::EmptyTuple;
        }
        let keep = items.len().min(TUPLE_KEEP);
        let kept = &items[..keep];
        if !kept.iter().any(Val::interesting) {
            return if kept.iter().all(|v| matches!(v, Val::Other)) {
                Val::Other
            } else {
                Val::Unknown
            };
        }
        if self.items.len() + keep > MAX_TUPLE_ITEMS {
            return Val::Unknown;
        }
        let start = self.items.len() as u32;
        self.items.reserve(keep);
        for v in kept {
            // (not extend_from_slice: its memmove call is slow for the few items most tuples hold)
            self.items.push(*v);
        }
        self.hdrs.push((start, keep as u32, items.len()));
        Val::Tuple((self.hdrs.len() - 1) as u32)
    }

    /// (kept items, length) of a tuple value.
    fn get(&self, v: &Val) -> Option<(&[Val], usize)> {
        match *v {
            Val::EmptyTuple => Some((&[], 0)),
            Val::Tuple(i) => {
                let (start, kept, len) = self.hdrs[i as usize];
                Some((&self.items[start as usize..(start + kept) as usize], len))
            }
            _ => None,
        }
    }

    /// All the items of a tuple value, if all are tracked.
    fn complete(&self, v: &Val) -> Option<&[Val]> {
        match self.get(v) {
            Some((items, len)) if items.len() == len => Some(items),
            _ => None,
        }
    }

    /// The argument facts of a call whose argument tuple is `v`.
    fn args(&self, v: &Val) -> Vec<ArgFact> {
        match self.get(v) {
            Some((items, _)) => arg_facts(items, 0),
            None => Vec::new(),
        }
    }
}

/// Where a call's arguments are, for [`Machine::instantiate`].
enum ArgSrc {
    /// The argument tuple (REDUCE, NEWOBJ).
    Tuple(Val),
    /// Stack items (OBJ, INST).
    Stack(usize, usize),
    /// Already collected (copyreg.__newobj__).
    Owned(Option<Vec<Val>>),
}

impl Val {
    fn span(kind: SKind, off: usize, len: usize) -> Val {
        Val::Str {
            kind,
            memo: false,
            len_hi: (len >> 32) as u16,
            len_lo: len as u32,
            off: off as u64,
        }
    }

    /// (kind, from memo, offset, length) of a str/bytes literal.
    fn lit(&self) -> Option<(SKind, bool, usize, usize)> {
        match *self {
            Val::Str {
                kind,
                memo,
                len_hi,
                len_lo,
                off,
            } => Some((
                kind,
                memo,
                off as usize,
                ((len_hi as usize) << 32) | len_lo as usize,
            )),
            _ => None,
        }
    }

    /// Worth keeping in a tuple: it can matter for argument facts or joblib evaluation.
    fn interesting(&self) -> bool {
        match self {
            Val::Other | Val::Unknown => false,
            Val::Result { obj, .. } => *obj < MAYBE_OBJ,
            _ => true,
        }
    }

    /// Python-truthiness when it is known to be false.
    fn known_falsy(&self) -> bool {
        match self {
            Val::None | Val::EmptyTuple | Val::Bool(false) | Val::Int(0) => true,
            Val::Str { .. } => matches!(self.lit(), Some((_, _, _, 0))),
            _ => false,
        }
    }

    fn small_int(&self) -> Option<i64> {
        match *self {
            Val::Int(i) => Some(i),
            Val::Bool(b) => Some(b as i64),
            _ => None,
        }
    }
}

/// String/bytes literals and imported globals among `items` as argument facts (index counted
/// from `first`), at most [`MAX_ARGS`].
fn arg_facts(items: &[Val], first: usize) -> Vec<ArgFact> {
    let mut out = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let value = match *v {
            Val::Str { .. } => match v.lit() {
                Some((kind, _, offset, length)) => ArgValue::Literal {
                    kind: kind.arg_kind(),
                    offset,
                    length,
                },
                None => continue,
            },
            // NO_GLOBAL: an index beyond u32 (never with real limits); not reported, as a
            // call's `target`
            Val::Global(g) if g != NO_GLOBAL => ArgValue::Global(g as usize),
            _ => continue,
        };
        if out.len() == MAX_ARGS {
            break;
        }
        out.push(ArgFact {
            index: first + i,
            value,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------
// Globals that matter for joblib
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GKind {
    Other,
    /// `joblib.numpy_pickle.NumpyArrayWrapper` (or the old sklearn.externals copy).
    Wrapper,
    /// `numpy.dtype`.
    Dtype,
    /// `copyreg._reconstructor`.
    Reconstructor,
    /// `copyreg.__newobj__`.
    NewObj,
    /// `copyreg.__newobj_ex__`.
    NewObjEx,
    /// `builtins.object`.
    Object,
    /// numpy's random-generator constructors (`numpy.random._pickle`) and Cython's
    /// `__pyx_unpickle_*` functions of numpy, pandas, scikit-learn and SciPy: their objects define
    /// `__setstate__`, so a BUILD on one never sets attributes (nor `__class__`).
    SetState,
}

const KNOWN_GLOBALS: &[(&str, GKind)] = &[
    ("joblib.numpy_pickle.NumpyArrayWrapper", GKind::Wrapper),
    (
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
        GKind::Wrapper,
    ),
    ("numpy.dtype", GKind::Dtype),
    ("numpy.core.multiarray.dtype", GKind::Dtype),
    ("numpy._core.multiarray.dtype", GKind::Dtype),
    ("copyreg._reconstructor", GKind::Reconstructor),
    ("copyreg.__newobj__", GKind::NewObj),
    ("copyreg.__newobj_ex__", GKind::NewObjEx),
    ("builtins.object", GKind::Object),
    ("numpy.random._pickle.__bit_generator_ctor", GKind::SetState),
    ("numpy.random._pickle.__generator_ctor", GKind::SetState),
    ("numpy.random._pickle.__randomstate_ctor", GKind::SetState),
];

/// What `find_class(module, name)` returns, for the few globals the joblib model needs.
/// Protocol < 3 maps Python 2 module names (fix_imports); protocol >= 4 resolves dotted names.
fn classify_global(module: &Text, name: &Text, protocol: u8, truncated: bool) -> GKind {
    if truncated {
        return GKind::Other;
    }
    let (m, n) = match (module.as_str(), name.as_str()) {
        (Some(m), Some(n)) => (m, n),
        _ => return GKind::Other,
    };
    let m = if protocol < 3 {
        match m {
            "copy_reg" => "copyreg",
            "__builtin__" => "builtins",
            _ => m,
        }
    } else {
        m
    };
    for &(full, kind) in KNOWN_GLOBALS {
        let matched = if protocol >= 4 {
            full.len() == m.len() + 1 + n.len()
                && full.starts_with(m)
                && full.as_bytes()[m.len()] == b'.'
                && full.ends_with(n)
        } else {
            match full.rfind('.') {
                Some(i) => &full[..i] == m && &full[i + 1..] == n,
                None => false,
            }
        };
        if matched {
            return kind;
        }
    }
    if is_cython_unpickle(m, n) {
        return GKind::SetState;
    }
    GKind::Other
}

/// Cython's pickle support in numpy, pandas, scikit-learn or SciPy (`__pyx_unpickle_<Class>`): it
/// makes an object of a Cython class (or a subclass), whose `__setstate__` takes a BUILD's state.
fn is_cython_unpickle(module: &str, name: &str) -> bool {
    let package = module.split('.').next().unwrap_or("");
    name.starts_with("__pyx_unpickle_")
        && !name.contains('.')
        && matches!(package, "numpy" | "pandas" | "sklearn" | "scipy")
}

/// Attributes a dict sets on a joblib wrapper, as far as known.
#[derive(Debug, Default)]
struct DictInfo {
    /// A key might be a str computed at load time: its effect is unknown.
    tainted: bool,
    shape: Option<Val>,
    dtype: Option<Val>,
    align: Option<Val>,
    class: Option<Val>,
}

enum KeyClass {
    Boring,
    Taint,
    Shape,
    Dtype,
    Align,
    Class,
}

fn classify_key(data: &[u8], k: &Val) -> KeyClass {
    match k {
        Val::Str { .. } => {
            let (kind, _, off, len) = match k.lit() {
                Some(l) => l,
                None => return KeyClass::Boring,
            };
            if !kind.is_str() || len > 512 {
                return KeyClass::Boring;
            }
            let owned;
            let text: &[u8] = match kind {
                SKind::Utf8 | SKind::LegacyUtf8 => &data[off..off + len],
                _ => {
                    owned = short_text(data, k).unwrap_or_default();
                    &owned
                }
            };
            match text {
                b"shape" => KeyClass::Shape,
                b"dtype" => KeyClass::Dtype,
                b"numpy_array_alignment_bytes" => KeyClass::Align,
                b"__class__" => KeyClass::Class,
                _ => KeyClass::Boring,
            }
        }
        Val::Global(_) | Val::Result { .. } | Val::Unknown => KeyClass::Taint,
        _ => KeyClass::Boring,
    }
}

/// Could this dict key set a wrapper attribute (or be a computed str)?
#[inline(always)]
fn key_may_matter(k: &Val) -> bool {
    match *k {
        Val::Str {
            kind: SKind::Utf8 | SKind::LegacyUtf8,
            len_hi,
            len_lo,
            ..
        } => len_hi == 0 && matches!(len_lo, 5 | 9 | 27),
        Val::Str { kind, .. } => kind.is_str(),
        Val::Global(_) | Val::Result { .. } | Val::Unknown => true,
        _ => false,
    }
}

/// Remember what `pairs` (key, value, key, value, ...) stored into dict `id` sets on a wrapper.
#[inline(always)]
fn track_pairs(
    data: &[u8],
    dicts: &mut HashMap<u64, DictInfo>,
    overflow: &mut bool,
    id: u64,
    pairs: &[Val],
) {
    let mut i = 0;
    while i + 1 < pairs.len() {
        if key_may_matter(&pairs[i]) {
            track_pairs_slow(data, dicts, overflow, id, pairs);
            return;
        }
        i += 2;
    }
}

#[cold]
fn track_pairs_slow(
    data: &[u8],
    dicts: &mut HashMap<u64, DictInfo>,
    overflow: &mut bool,
    id: u64,
    pairs: &[Val],
) {
    for kv in pairs.chunks_exact(2) {
        if !key_may_matter(&kv[0]) {
            continue;
        }
        let class = classify_key(data, &kv[0]);
        if matches!(class, KeyClass::Boring) {
            continue;
        }
        if !dicts.contains_key(&id) {
            if dicts.len() >= MAX_DICT_INFOS {
                *overflow = true;
                return;
            }
            dicts.insert(id, DictInfo::default());
        }
        let info = match dicts.get_mut(&id) {
            Some(i) => i,
            None => return,
        };
        let v = Some(kv[1]);
        match class {
            KeyClass::Taint => info.tainted = true,
            KeyClass::Shape => info.shape = v,
            KeyClass::Dtype => info.dtype = v,
            KeyClass::Align => info.align = v,
            KeyClass::Class => info.class = v,
            KeyClass::Boring => {}
        }
    }
}

/// A joblib `NumpyArrayWrapper` instance: the attributes that decide what joblib reads.
#[derive(Clone, Debug)]
struct WrapperInfo {
    /// Its attributes (or class) may differ from what is tracked here.
    unknown: bool,
    /// It is (still) a NumpyArrayWrapper.
    is_wrapper: bool,
    shape: Option<Val>,
    dtype: Option<Val>,
    align: Option<Val>,
}

impl WrapperInfo {
    fn new() -> Self {
        WrapperInfo {
            unknown: false,
            is_wrapper: true,
            shape: None,
            dtype: None,
            align: None,
        }
    }
    fn unknown() -> Self {
        WrapperInfo {
            unknown: true,
            ..WrapperInfo::new()
        }
    }
}

/// A numpy dtype object: what joblib asks of it.
#[derive(Clone, Copy, Debug)]
struct DtypeInfo {
    known: bool,
    /// Created with copy=True (a fresh object, not numpy's shared singleton).
    fresh: bool,
    kind: u8,
    base: i64,
    itemsize: i64,
    hasobject: bool,
}

impl DtypeInfo {
    fn unknown() -> Self {
        DtypeInfo {
            known: false,
            fresh: false,
            kind: 0,
            base: 0,
            itemsize: 0,
            hasobject: false,
        }
    }
}

#[derive(Clone, Debug)]
enum Obj {
    Wrapper(WrapperInfo),
    Dtype(DtypeInfo),
}

/// numpy's type string from a dtype's reduce (`'f8'`, `'U5'`, `'O8'`, ...): (kind, itemsize).
/// Only the canonical spellings numpy itself writes are recognised.
fn parse_typestr(s: &[u8]) -> Option<(u8, i64)> {
    if s.len() < 2 || s.len() > 12 {
        return None;
    }
    let (kind, digits) = (s[0], &s[1..]);
    if digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let size = match kind {
        b'b' if n == 1 => 1,
        b'i' | b'u' if matches!(n, 1 | 2 | 4 | 8) => n,
        b'f' if matches!(n, 2 | 4 | 8 | 16) => n,
        b'c' if matches!(n, 8 | 16 | 32) => n,
        b'm' | b'M' | b'O' if n == 8 => 8,
        b'S' | b'V' => n,
        b'U' => n.checked_mul(4)?,
        _ => return None,
    };
    Some((kind, size))
}

fn dtype_from_args(data: &[u8], args: Option<&[Val]>) -> DtypeInfo {
    let a = match args {
        Some(a) if a.len() == 3 => a,
        _ => return DtypeInfo::unknown(),
    };
    let (kind, base) = match short_text(data, &a[0]).as_deref().and_then(parse_typestr) {
        Some(p) => p,
        None => return DtypeInfo::unknown(),
    };
    if a[1].small_int().is_none() {
        return DtypeInfo::unknown();
    }
    let fresh = match a[2].small_int() {
        Some(c) => c != 0,
        None => return DtypeInfo::unknown(),
    };
    DtypeInfo {
        known: true,
        fresh,
        kind,
        base,
        itemsize: base,
        hasobject: kind == b'O',
    }
}

/// numpy's `dtype.__setstate__` for the 8- and 9-item states (versions 0-4): itemsize and
/// hasobject afterwards, or None if numpy would do something this model does not know.
fn dtype_setstate(tuples: &Tuples, d: &DtypeInfo, state: &Val) -> Option<(i64, bool)> {
    let items = match tuples.complete(state) {
        Some(items) if items.len() == 8 || items.len() == 9 => items,
        _ => return None,
    };
    let int32 = |v: &Val| v.small_int().filter(|i| i32::try_from(*i).is_ok());
    let version = int32(&items[0])?;
    if !(0..=4).contains(&version) {
        return None;
    }
    let elsize = int32(&items[5])?;
    let mut flags = int32(&items[7])?;
    int32(&items[6])?;
    if (-128..0).contains(&flags) {
        flags += 128;
    }
    if flags < 0 {
        return None;
    }
    let hasobject = if version >= 3 {
        flags & 1 != 0
    } else {
        if !matches!(items[4], Val::None) {
            return None;
        }
        flags != 0 || d.kind == b'O'
    };
    let itemsize = if matches!(d.kind, b'S' | b'U' | b'V') {
        elsize
    } else {
        d.base
    };
    Some((itemsize, hasobject))
}

/// How a call creates its result, for [`Machine::instantiate`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// `callable(*args)` (REDUCE, and OBJ/INST with arguments).
    Call,
    /// `cls.__new__(cls, *args)` (NEWOBJ, and OBJ/INST without arguments).
    New,
    /// `cls.__new__(cls, *args, **kwargs)` (NEWOBJ_EX).
    NewEx,
}

// ---------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------

/// The memo: a map from key to value. Picklers use small consecutive keys, so those live in
/// a vector; keys far beyond the number of entries (which a hostile stream may choose) go to
/// a hash map, so memory stays proportional to the entries, never to a key's value. Each
/// value kept is a [`Slot`] of 8 bytes.
///
/// Up to a budget (`max_memo`) every value is kept. Past it a new key keeps only a global (what
/// names code, so calls through the memo stay linked; at most [`KEEP_PAST_BUDGET`] more); any
/// other value is dropped and its key remembered in a bitset, so `len` (which MEMOIZE uses)
/// stays CPython's and a GET of the key reads as unknown instead of failing. Memory then grows
/// by a bit per key, not by a value.
#[derive(Default)]
struct Memo {
    dense: Vec<Slot>,
    sparse: HashMap<u64, Slot>,
    /// Payload offset -> length of the str/bytes literals too long or too far for a [`Slot`]
    /// (a literal is identified by its payload's offset: one entry per literal, however often
    /// it is memoized).
    long: HashMap<u64, usize>,
    /// Distinct keys PUT, kept or dropped: CPython's `len(memo)`.
    len: usize,
    /// Values kept.
    kept: usize,
    /// Keys whose value was dropped: a bitset for keys near the others, a set (at most
    /// [`MAX_FAR_DROPPED`]) for keys far beyond them.
    dropped_bits: Vec<u64>,
    dropped_far: HashSet<u64>,
    /// PUTs whose value was dropped.
    dropped: u64,
}

/// Globals a memo keeps past its budget, at most (then the memo limit stops the pickle).
pub const KEEP_PAST_BUDGET: usize = 1 << 20;

/// Dropped keys far beyond the memo's other keys (only a hostile stream makes them), at most.
pub const MAX_FAR_DROPPED: usize = 1 << 16;

/// A memo value in 8 bytes (`Slot(0)`: no entry): a tag in the low 4 bits, the value above.
/// A str/bytes literal keeps its kind, offset and length when the offset is below 2^40 and
/// the length below 2^17, else its kind and offset only (its length is in [`Memo::long`]);
/// the `memo` flag is not kept (a GET sets it). Ints are tracked within [`TRACKED_INT`] only,
/// and the other values' indices are bounded, so every value fits.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Slot(u64);

mod tag {
    pub const OTHER: u64 = 1;
    pub const UNKNOWN: u64 = 2;
    pub const NONE: u64 = 3;
    pub const FALSE: u64 = 4;
    pub const TRUE: u64 = 5;
    pub const INT: u64 = 6;
    pub const STR: u64 = 7;
    pub const LONG_STR: u64 = 8;
    pub const GLOBAL: u64 = 9;
    pub const RESULT: u64 = 10;
    pub const DICT: u64 = 11;
    pub const EMPTY_TUPLE: u64 = 12;
    pub const TUPLE: u64 = 13;
}

const SLOT_STR_OFF: u32 = 40;
const SLOT_STR_LEN: u32 = 17;
const SLOT_VALUE: u64 = (1 << 60) - 1;

impl Memo {
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn get(&self, key: u64) -> Option<Val> {
        let s = match usize::try_from(key) {
            Ok(k) if k < self.dense.len() => self.dense[k],
            _ => self.sparse.get(&key).copied().unwrap_or_default(),
        };
        if s == Slot(0) {
            return (self.dropped > 0 && self.is_dropped(key)).then_some(Val::Unknown);
        }
        self.unpack(s)
    }

    /// `memo[key] = v`, within the budget `max_memo` (see [`Memo`]); false when the memo limit
    /// is reached.
    #[inline(always)]
    fn put(&mut self, key: u64, v: &Val, max_memo: usize) -> bool {
        if self.kept < max_memo {
            // (no key was dropped yet: the budget is only ever passed once)
            if self.insert(key, v) {
                self.kept += 1;
                self.len += 1;
            }
            return true;
        }
        self.put_past_budget(key, v, max_memo)
    }

    #[cold]
    fn put_past_budget(&mut self, key: u64, v: &Val, max_memo: usize) -> bool {
        let dense = usize::try_from(key).ok().filter(|&k| k < self.dense.len());
        let has_value = match dense {
            Some(k) => self.dense[k] != Slot(0),
            None => self.sparse.contains_key(&key),
        };
        let was_dropped = !has_value && self.is_dropped(key);
        if has_value || matches!(v, Val::Global(_)) {
            if !has_value && self.kept >= max_memo.saturating_add(KEEP_PAST_BUDGET) {
                return false;
            }
            let s = self.pack(v);
            match dense {
                Some(k) => self.dense[k] = s,
                None => {
                    self.sparse.insert(key, s); // past the budget the vector no longer grows
                }
            }
            if !has_value {
                self.kept += 1;
            }
        } else {
            if !was_dropped && !self.mark_dropped(key) {
                return false;
            }
            self.dropped += 1;
        }
        if !has_value && !was_dropped {
            self.len += 1;
        }
        true
    }

    fn is_dropped(&self, key: u64) -> bool {
        let word = usize::try_from(key / 64).unwrap_or(usize::MAX);
        self.dropped_bits
            .get(word)
            .is_some_and(|w| w & (1 << (key % 64)) != 0)
            || self.dropped_far.contains(&key)
    }

    /// Remember that `key` was dropped; false when too many far keys were.
    fn mark_dropped(&mut self, key: u64) -> bool {
        let bound = (self.len as u64).saturating_mul(2).saturating_add(1024);
        if key < bound {
            let word = (key / 64) as usize;
            if word >= self.dropped_bits.len() {
                self.dropped_bits.resize(word + 1, 0);
            }
            self.dropped_bits[word] |= 1 << (key % 64);
        } else {
            if self.dropped_far.len() >= MAX_FAR_DROPPED {
                return false;
            }
            self.dropped_far.insert(key);
        }
        true
    }

    /// Store `v` under `key`; true when the key had no value.
    #[inline(always)]
    fn insert(&mut self, key: u64, v: &Val) -> bool {
        let s = self.pack(v);
        if key < self.dense.len() as u64 {
            return std::mem::replace(&mut self.dense[key as usize], s) == Slot(0);
        }
        if key == self.dense.len() as u64
            && self.dense.len() < self.dense.capacity()
            && self.sparse.is_empty()
        {
            // the next key, with room reserved: slots are written (and their pages touched) as keys come
            self.dense.push(s);
            return true;
        }
        self.insert_slow(key, s)
    }

    #[cold]
    fn insert_slow(&mut self, key: u64, s: Slot) -> bool {
        let bound = (self.kept as u64).saturating_mul(2).saturating_add(1024);
        if key >= self.dense.len() as u64 && key < bound {
            // Grow the vector by a quarter (not doubling: large pickles hold millions of keys) and
            // move sparse keys into it; at most ~2x the entries + 2048. Without sparse keys the
            // quarter is only reserved, and `insert` fills it key by key.
            let len = self.dense.len();
            let new_len = (key as usize + 1).max(len + len / 4).max(64);
            if self.sparse.is_empty() {
                self.dense.reserve_exact(new_len - len);
                self.dense.resize(key as usize + 1, Slot(0));
            } else {
                self.dense.resize(new_len, Slot(0));
                let dense = &mut self.dense;
                self.sparse.retain(|&k, &mut s| {
                    if k < new_len as u64 {
                        dense[k as usize] = s;
                        false
                    } else {
                        true
                    }
                });
            }
        }
        match usize::try_from(key) {
            Ok(k) if k < self.dense.len() => std::mem::replace(&mut self.dense[k], s) == Slot(0),
            _ => self.sparse.insert(key, s).is_none(),
        }
    }

    #[inline(always)]
    fn pack(&mut self, v: &Val) -> Slot {
        let (t, value) = match *v {
            Val::Other => (tag::OTHER, 0),
            Val::Unknown => (tag::UNKNOWN, 0),
            Val::None => (tag::NONE, 0),
            Val::Bool(false) => (tag::FALSE, 0),
            Val::Bool(true) => (tag::TRUE, 0),
            Val::Int(i) => {
                debug_assert!((-TRACKED_INT..TRACKED_INT).contains(&i));
                (tag::INT, i as u64 & SLOT_VALUE)
            }
            Val::Str {
                kind,
                off,
                len_hi,
                len_lo,
                ..
            } => {
                if off < 1 << SLOT_STR_OFF && len_hi == 0 && len_lo < 1 << SLOT_STR_LEN {
                    (
                        tag::STR,
                        kind as u64 | off << 3 | (len_lo as u64) << (3 + SLOT_STR_OFF),
                    )
                } else {
                    self.long
                        .insert(off, (len_hi as usize) << 32 | len_lo as usize);
                    (tag::LONG_STR, kind as u64 | off << 3) // offsets are far below 2^57
                }
            }
            Val::Global(g) => (tag::GLOBAL, g as u64),
            Val::Result { target, obj } => {
                // obj: an index below MAX_OBJS (2^20), NO_OBJ or MAYBE_OBJ, in 28 bits
                debug_assert!(obj.wrapping_add(2) < 1 << 28);
                (
                    tag::RESULT,
                    target as u64 | (obj.wrapping_add(2) as u64) << 32,
                )
            }
            Val::Dict(id) => (tag::DICT, id & SLOT_VALUE), // one id per opcode: below 2^60
            Val::EmptyTuple => (tag::EMPTY_TUPLE, 0),
            Val::Tuple(i) => (tag::TUPLE, i as u64),
        };
        Slot(t | value << 4)
    }

    #[inline(always)]
    fn unpack(&self, s: Slot) -> Option<Val> {
        let value = s.0 >> 4;
        Some(match s.0 & 0xF {
            tag::OTHER => Val::Other,
            tag::UNKNOWN => Val::Unknown,
            tag::NONE => Val::None,
            tag::FALSE => Val::Bool(false),
            tag::TRUE => Val::Bool(true),
            tag::INT => Val::Int(s.0 as i64 >> 4),
            tag::STR => Val::span(
                SKind::from_bits(value),
                ((value >> 3) & ((1 << SLOT_STR_OFF) - 1)) as usize,
                (value >> (3 + SLOT_STR_OFF)) as usize,
            ),
            tag::LONG_STR => {
                let off = value >> 3;
                Val::span(SKind::from_bits(value), off as usize, *self.long.get(&off)?)
            }
            tag::GLOBAL => Val::Global(value as u32),
            tag::RESULT => Val::Result {
                target: value as u32,
                obj: ((value >> 32) as u32).wrapping_sub(2),
            },
            tag::DICT => Val::Dict(value),
            tag::EMPTY_TUPLE => Val::EmptyTuple,
            tag::TUPLE => Val::Tuple(value as u32),
            _ => return None,
        })
    }
}

/// The big working buffers of a [`Machine`] (stack, memo, tuples), kept by each thread between
/// two analyses: allocating them afresh for every input costs one page fault per 4 KiB touched,
/// which for a checkpoint of thousands of tensors (a memo of ~40k keys, ~70k tuple items) is
/// more than the parse itself. Buffers are handed out empty, so results never depend on them;
/// a buffer above [`SCRATCH_KEEP`] bytes is freed instead of kept.
#[derive(Default)]
struct Scratch {
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: Vec<Slot>,
    tuple_hdrs: Vec<(u32, u32, usize)>,
    tuple_items: Vec<Val>,
}

/// Largest buffer (bytes of capacity) a thread keeps for the next analysis.
const SCRATCH_KEEP: usize = 4 << 20;

thread_local! {
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

impl Scratch {
    /// This thread's kept buffers (empty), or new ones (a nested pickle while its parent holds
    /// them, or the first analysis on this thread).
    fn take() -> Scratch {
        SCRATCH
            .try_with(|c| c.take())
            .ok()
            .flatten()
            .map(|b| *b)
            .unwrap_or_default()
    }

    /// Keep the buffers of a finished machine for the next one (emptied; too large ones freed).
    fn give_back(m: Machine) {
        fn keep<T>(mut v: Vec<T>) -> Vec<T> {
            if v.capacity().saturating_mul(std::mem::size_of::<T>()) > SCRATCH_KEEP {
                return Vec::new();
            }
            v.clear();
            v
        }
        let s = Scratch {
            stack: keep(m.stack),
            marks: keep(m.marks),
            memo: keep(m.memo.dense),
            tuple_hdrs: keep(m.tuples.hdrs),
            tuple_items: keep(m.tuples.items),
        };
        let _ = SCRATCH.try_with(|c| c.set(Some(Box::new(s))));
    }
}

/// Why an opcode stopped the pickle.
enum Halt {
    /// STOP: the pickle ended. (An `Err`, so that the loop's usual path tests no flag.)
    Stop,
    Truncated,
    Error(ErrorCode),
    Limit(LimitKind),
    /// A nested (joblib object array) pickle did not reach STOP: the outer one stops too.
    Nested(Status, Option<ErrorCode>, Option<usize>),
}

type Step<T> = Result<T, Halt>;

fn err<T>(code: ErrorCode) -> Step<T> {
    Err(Halt::Error(code))
}

/// State shared by the pickles of one analysis.
struct Ctx<'h> {
    facts: Facts,
    limits: Limits,
    max_string: usize,
    total: u64,
    /// Facts recorded so far, frame violations of finished pickles included.
    recorded: u64,
    /// `GKind` of each entry of `facts.globals`.
    gkind: Vec<GKind>,
    /// [`Options::compact`].
    compact: bool,
    /// Compact mode: for each entry of `facts.globals`, per call opcode ([`call_slot`]), the
    /// index in `facts.calls` of the group of argument-less calls of that global (NO_GROUP if
    /// none yet). A global is only ever on the stack of the pickle that imported it, so the
    /// global identifies the pickle of the group.
    call_groups: Vec<[u32; CALL_SLOTS]>,
    /// A numpy dtype singleton may have been modified: dtypes are no longer known.
    dtype_poisoned: bool,
    progress: Option<&'h mut dyn FnMut(usize)>,
    next_progress: usize,
}

/// Bytes between two calls of the progress hook (which releases the file's pages behind the
/// parser: at most about this much of the file stays resident).
const PROGRESS_STEP: usize = 1 << 20;

/// Opcodes between two checks of the opcode budget (and calls of the progress hook).
const CHECK_EVERY: u64 = 4096;

impl<'h> Ctx<'h> {
    fn new(limits: Limits, compact: bool, progress: Option<&'h mut dyn FnMut(usize)>) -> Self {
        let next_progress = if progress.is_some() {
            PROGRESS_STEP
        } else {
            usize::MAX
        };
        Ctx {
            facts: Facts::new(),
            limits,
            max_string: usize::try_from(limits.max_string).unwrap_or(usize::MAX),
            total: 0,
            recorded: 0,
            gkind: Vec::new(),
            compact,
            call_groups: Vec::new(),
            dtype_poisoned: false,
            progress,
            next_progress,
        }
    }

    #[inline]
    fn progress(&mut self, pos: usize) {
        if pos >= self.next_progress {
            if let Some(p) = self.progress.as_mut() {
                p(pos);
            }
            self.next_progress = pos.saturating_add(PROGRESS_STEP);
        }
    }
}

struct Machine<'a> {
    data: &'a [u8],
    n: usize,
    /// Next byte to execute.
    pos: usize,
    /// Reads ending at or before this offset need no framing or truncation handling:
    /// `min(frame_end, n)` inside a frame, else `n`. Invariant: pos <= avail <= n.
    avail: usize,
    in_frame: bool,
    /// Offset of the FRAME opcode of the current frame.
    frame_at: usize,
    /// Declared end of the current frame (may exceed the data).
    frame_end: usize,
    /// Inside a frame: the pure-Python unpickler's file position (after the frame, plus
    /// joblib data read since). Outside a frame it is `pos`.
    ffp: usize,
    /// Offset of the opcode being executed.
    cur: usize,
    index: usize,
    parent: Option<usize>,
    /// Follow joblib's reads (top-level pickles with follow_joblib).
    joblib: bool,
    /// A NumpyArrayWrapper global was imported in this pickle.
    saw_wrapper: bool,
    /// BUILD on a global (maybe the wrapper class itself): class attributes may have changed.
    wrapper_class_tainted: bool,
    stack: Vec<Val>,
    marks: Vec<usize>,
    memo: Memo,
    proto: u8,
    first_proto: Option<u8>,
    violations: Vec<FrameViolation>,
    tuples: Tuples,
    next_dict: u64,
    dicts: HashMap<u64, DictInfo>,
    dict_overflow: bool,
    objs: Vec<Obj>,
    /// `limits.max_stack` / `max_memo` as usize (saturated).
    max_stack: usize,
    max_memo: usize,
    /// Facts were recorded by the current opcode: check `max_facts` after it. Set at the start,
    /// too (checked after the first opcode): the STOP of the pickle before may have recorded a
    /// frame violation unchecked.
    check_facts: bool,
    /// Compact mode: index in `facts.calls` of this pickle's group of argument-less calls
    /// whose target is not a global, per call opcode (NO_GROUP if none yet).
    untargeted_groups: [u32; CALL_SLOTS],
    /// Compact mode: index in `facts.persistent_ids` of this pickle's PERSID / BINPERSID group.
    persid_groups: [u32; 2],
    /// Compact mode: index in `facts.globals` of this pickle's group of each distinct import.
    global_groups: HashMap<GlobalKey, u32>,
    /// Opcodes to execute before the checks are due again (the limits the opcode before
    /// reached: stack, facts; the opcode budget): see `schedule_checks`. A count down, so
    /// that the loop pays one decrement per opcode.
    left: u64,
    /// Opcodes executed in this pickle when `left` reaches 0: `ops()` is `ops_due - left`.
    ops_due: u64,
    /// `ctx.total` is `total_base + ops()`.
    total_base: u64,
}

impl<'a> Machine<'a> {
    fn new(
        data: &'a [u8],
        start: usize,
        index: usize,
        parent: Option<usize>,
        joblib: bool,
        limits: &Limits,
    ) -> Self {
        let scratch = Scratch::take();
        Machine {
            data,
            n: data.len(),
            pos: start,
            avail: data.len(),
            in_frame: false,
            frame_at: 0,
            frame_end: 0,
            ffp: 0,
            cur: start,
            index,
            parent,
            joblib,
            saw_wrapper: false,
            wrapper_class_tainted: false,
            stack: scratch.stack,
            marks: scratch.marks,
            memo: Memo {
                dense: scratch.memo,
                sparse: HashMap::new(),
                long: HashMap::new(),
                len: 0,
                kept: 0,
                dropped_bits: Vec::new(),
                dropped_far: HashSet::new(),
                dropped: 0,
            },
            proto: 0,
            first_proto: None,
            violations: Vec::new(),
            tuples: Tuples {
                hdrs: scratch.tuple_hdrs,
                items: scratch.tuple_items,
            },
            next_dict: 0,
            dicts: HashMap::new(),
            dict_overflow: false,
            objs: Vec::new(),
            max_stack: usize::try_from(limits.max_stack).unwrap_or(usize::MAX),
            max_memo: usize::try_from(limits.max_memo).unwrap_or(usize::MAX),
            check_facts: true,
            untargeted_groups: [NO_GROUP; CALL_SLOTS],
            persid_groups: [NO_GROUP; 2],
            global_groups: HashMap::new(),
            total_base: 0,
            left: 0,
            ops_due: 0,
        }
    }

    fn run(&mut self, ctx: &mut Ctx) -> PickleInfo {
        let start = self.pos;
        self.total_base = ctx.total;
        let (status, error, error_offset) = self.run_opcodes(ctx);
        let opcodes = self.ops();
        ctx.total = self.total_base + opcodes;
        let (end, frame_end) = match status {
            Status::Stop => {
                let fp = self.file_pos();
                (Some(self.pos), Some(fp).filter(|&f| f > self.pos))
            }
            _ => (None, None),
        };
        ctx.recorded += self.violations.len() as u64;
        PickleInfo {
            index: self.index,
            parent: self.parent,
            start,
            end,
            frame_end,
            protocol: self.first_proto,
            opcodes,
            status,
            error,
            error_offset,
            frame_violations: std::mem::take(&mut self.violations),
            memo_dropped: self.memo.dropped,
        }
    }

    /// Execute opcodes until the pickle ends: (status, error, offset where it stopped).
    fn run_opcodes(&mut self, ctx: &mut Ctx) -> (Status, Option<ErrorCode>, Option<usize>) {
        loop {
            if self.left == 0 {
                if let Some(end) = self.checks(ctx) {
                    return end;
                }
            }
            if self.pos >= self.avail && !self.next_opcode_available() {
                return (
                    Status::Truncated,
                    Some(ErrorCode::Truncated),
                    Some(self.pos),
                );
            }
            let at = self.pos;
            debug_assert!(at < self.avail && self.avail <= self.data.len());
            // SAFETY: at < avail <= data.len() (checked just above; see `avail`).
            let code = unsafe { *self.data.get_unchecked(at) };
            self.left -= 1;
            ctx.facts.opcode_counts[code as usize] += 1;
            self.pos = at + 1;
            self.cur = at;
            #[cfg(debug_assertions)]
            let used = self.stack.len() + self.marks.len();
            match self.exec(code, at, ctx) {
                Ok(()) => {
                    // (schedule_checks relies on it)
                    #[cfg(debug_assertions)]
                    debug_assert!(self.stack.len() + self.marks.len() <= used + 1);
                }
                Err(Halt::Stop) => return (Status::Stop, None, None),
                Err(Halt::Truncated) => {
                    return (Status::Truncated, Some(ErrorCode::Truncated), Some(at))
                }
                Err(Halt::Error(e)) => return (Status::Error, Some(e), Some(at)),
                Err(Halt::Limit(kind)) => {
                    ctx.facts.limit = Some(kind);
                    return (Status::Limit, None, Some(at));
                }
                Err(Halt::Nested(status, error, offset)) => return (status, error, offset),
            }
        }
    }

    /// The checks due before the next opcode (see `left`), in this order: the limits
    /// the opcode before (at `cur`) may have reached, the stack's then the facts' (when it
    /// recorded some; the memo's is checked in memo_put, the only place it grows); the end of
    /// the data; an invalid opcode; the opcode budget, shared by all pickles. Then the
    /// progress hook. `Some` ends the pickle.
    #[cold]
    #[inline(never)]
    fn checks(&mut self, ctx: &mut Ctx) -> Option<(Status, Option<ErrorCode>, Option<usize>)> {
        if self.ops() > 0 {
            let mut limit = None;
            if self.stack.len() + self.marks.len() > self.max_stack {
                limit = Some(LimitKind::Stack);
            } else if self.check_facts {
                self.check_facts = false;
                if ctx.recorded + self.violations.len() as u64 > ctx.limits.max_facts {
                    limit = Some(LimitKind::Facts);
                }
            }
            if limit.is_some() {
                ctx.facts.limit = limit;
                return Some((Status::Limit, None, Some(self.cur)));
            }
        }
        if self.pos >= self.avail && !self.next_opcode_available() {
            return None; // (run_opcodes reports it)
        }
        let at = self.pos;
        if !VALID[self.data[at] as usize] {
            // (an invalid byte is reported before the budget; elsewhere exec_rare finds it)
            return Some((Status::Error, Some(ErrorCode::InvalidOpcode), Some(at)));
        }
        let total = self.total_base + self.ops();
        if total >= ctx.limits.max_opcodes {
            ctx.facts.limit = Some(LimitKind::Opcodes);
            return Some((Status::Limit, None, Some(at)));
        }
        self.schedule_checks(ctx, total);
        ctx.progress(at);
        None
    }

    /// When the checks are next due: at the latest when the opcode budget runs out, after
    /// CHECK_EVERY opcodes, or after the first opcode that could take the stack past its limit.
    /// No opcode adds more than one item or mark, so that is the one after `max_stack - used`
    /// more. Recording a fact makes them due after the current opcode (`facts_recorded`).
    fn schedule_checks(&mut self, ctx: &Ctx, total: u64) {
        let used = self.stack.len() + self.marks.len();
        let headroom = (self.max_stack.saturating_sub(used) as u64).saturating_add(1);
        let wait = (ctx.limits.max_opcodes - total)
            .min(CHECK_EVERY)
            .min(headroom);
        let ops = self.ops();
        self.left = if self.check_facts { 1 } else { wait };
        self.ops_due = ops + self.left;
    }

    /// Opcodes executed in this pickle.
    #[inline(always)]
    fn ops(&self) -> u64 {
        self.ops_due - self.left
    }

    /// The current opcode recorded facts: `max_facts` is checked after it.
    #[inline(always)]
    fn facts_recorded(&mut self) {
        self.check_facts = true;
        self.ops_due -= self.left;
        self.left = 0;
    }

    // -- framing and reading ----------------------------------------------------------

    fn file_pos(&self) -> usize {
        if self.in_frame {
            self.ffp
        } else {
            self.pos
        }
    }

    fn set_file_pos(&mut self, fp: usize) {
        if self.in_frame {
            self.ffp = fp;
        } else {
            self.pos = fp;
        }
    }

    /// The current frame is used up: reading continues where the file is.
    fn leave_frame(&mut self) {
        self.in_frame = false;
        self.pos = self.ffp;
        self.avail = self.n;
    }

    fn violation(&mut self, offset: usize, kind: FrameViolationKind) {
        self.violations.push(FrameViolation { offset, kind });
        self.facts_recorded();
    }

    /// A read from `pos` crosses the end of the current frame: record it, drop the frame.
    fn cross_frame_end(&mut self) {
        self.violation(self.cur, FrameViolationKind::CrossesFrameEnd);
        self.in_frame = false;
        self.avail = self.n;
    }

    /// `pos >= avail` where an opcode is expected: leave a finished frame; is a byte left?
    #[cold]
    fn next_opcode_available(&mut self) -> bool {
        if self.in_frame && self.pos >= self.frame_end {
            self.leave_frame();
        }
        self.pos < self.avail
    }

    #[inline(always)]
    fn take(&mut self, n: u64) -> Step<&'a [u8]> {
        let p = self.pos;
        if n <= (self.avail - p) as u64 {
            let e = p + n as usize;
            self.pos = e;
            Ok(&self.data[p..e])
        } else {
            self.take_slow(n)
        }
    }

    #[cold]
    fn take_slow(&mut self, n: u64) -> Step<&'a [u8]> {
        if self.in_frame {
            if self.pos >= self.frame_end {
                self.leave_frame();
            } else if (self.pos as u64).saturating_add(n) > self.frame_end as u64 {
                self.cross_frame_end();
            }
        }
        let p = self.pos;
        if n > (self.avail - p) as u64 {
            return Err(Halt::Truncated);
        }
        self.pos = p + n as usize;
        Ok(&self.data[p..self.pos])
    }

    #[inline(always)]
    fn take_array<const N: usize>(&mut self) -> Step<[u8; N]> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline(always)]
    fn u8(&mut self) -> Step<u8> {
        let p = self.pos;
        if p < self.avail {
            self.pos = p + 1;
            Ok(self.data[p])
        } else {
            Ok(self.take_slow(1)?[0])
        }
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
    fn line(&mut self, ctx: &mut Ctx) -> Step<&'a [u8]> {
        if self.in_frame && self.pos >= self.frame_end {
            self.leave_frame();
        }
        let p = self.pos;
        let i = match find_newline(ctx, self.data, p) {
            Some(i) => i,
            None => return Err(Halt::Truncated),
        };
        if i + 1 > self.avail {
            self.cross_frame_end();
        }
        self.pos = i + 1;
        Ok(&self.data[p..i])
    }

    fn offset_of(&self, s: &[u8]) -> usize {
        s.as_ptr() as usize - self.data.as_ptr() as usize
    }

    // -- stack --------------------------------------------------------------------------

    #[inline(always)]
    fn base(&self) -> usize {
        match self.marks.last() {
            Some(&m) => m,
            None => 0,
        }
    }

    #[inline(always)]
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

    /// Pop the innermost mark: the stack index where its items start.
    #[inline]
    fn pop_mark(&mut self) -> Step<usize> {
        match self.marks.pop() {
            Some(m) => Ok(m),
            None => err(ErrorCode::MarkMissing),
        }
    }

    /// PUT/BINPUT/LONG_BINPUT/MEMOIZE. The top is read by reference, field by field: it was
    /// usually pushed by the opcode just before, in several stores, and copying its 16 bytes
    /// at once would wait for them to reach the cache (a PUT took twice as long).
    #[inline(always)]
    fn memo_put(&mut self, key: u64) -> Step<()> {
        self.need(1)?;
        let v = self
            .stack
            .last()
            .ok_or(Halt::Error(ErrorCode::StackUnderflow))?;
        if !self.memo.put(key, v, self.max_memo) {
            return Err(Halt::Limit(LimitKind::Memo));
        }
        Ok(())
    }

    #[inline(always)]
    fn memo_get(&mut self, key: u64) -> Step<()> {
        let mut v = match self.memo.get(key) {
            Some(v) => v,
            None => return err(ErrorCode::MemoMissing),
        };
        if let Val::Str { memo, .. } = &mut v {
            *memo = true;
        }
        self.stack.push(v);
        Ok(())
    }

    fn new_dict(&mut self) -> Val {
        if self.joblib {
            self.next_dict += 1;
            Val::Dict(self.next_dict)
        } else {
            Val::Other
        }
    }

    // -- facts --------------------------------------------------------------------------

    /// Record an import; `names` is (module, name, either-was-cut) unless unresolvable.
    fn add_global(
        &mut self,
        ctx: &mut Ctx,
        at: usize,
        opcode: u8,
        resolution: Resolution,
        names: Option<(Text, Text, bool)>,
    ) -> u32 {
        let (module, name, truncated) = match names {
            Some((m, n, t)) => (Some(m), Some(n), t),
            None => (None, None, false),
        };
        let kind = match (&module, &name) {
            (Some(m), Some(n)) => classify_global(m, n, self.proto, truncated),
            _ => GKind::Other,
        };
        if kind == GKind::Wrapper {
            self.saw_wrapper = true;
        }
        if ctx.compact {
            let key = (
                opcode,
                module.clone(),
                name.clone(),
                resolution,
                self.proto,
                truncated,
            );
            if let Some(&group) = self.global_groups.get(&key) {
                ctx.facts.globals[group as usize].count += 1;
                return group;
            }
            // (4G facts cannot fit in memory: the index always fits)
            if let Ok(i) = u32::try_from(ctx.facts.globals.len()) {
                self.global_groups.insert(key, i);
            }
        }
        ctx.facts.globals.push(GlobalFact {
            pickle: self.index,
            offset: at,
            opcode,
            module,
            name,
            resolution,
            protocol: self.proto,
            truncated,
            count: 1,
        });
        ctx.gkind.push(kind);
        if ctx.compact {
            ctx.call_groups.push([NO_GROUP; CALL_SLOTS]);
        }
        ctx.recorded += 1;
        self.facts_recorded();
        u32::try_from(ctx.facts.globals.len() - 1).unwrap_or(NO_GLOBAL)
    }

    /// Record a call site. In compact mode a call whose group exists only counts into it, so
    /// `args` (the argument facts, from the machine's state) is worked out for a group's first
    /// call only.
    fn add_call(
        &mut self,
        ctx: &mut Ctx,
        at: usize,
        opcode: u8,
        target: Option<u32>,
        args: impl FnOnce(&Self) -> Vec<ArgFact>,
    ) {
        let target = target.filter(|&t| t != NO_GLOBAL);
        if ctx.compact {
            let slot = call_slot(opcode);
            let group = match target {
                Some(g) => &mut ctx.call_groups[g as usize][slot],
                None => &mut self.untargeted_groups[slot],
            };
            if *group != NO_GROUP {
                let fact = &mut ctx.facts.calls[*group as usize];
                debug_assert!(fact.pickle == self.index && fact.opcode == opcode);
                fact.count += 1;
                return;
            }
            // (4G facts cannot fit in memory: the index always fits)
            if let Ok(i) = u32::try_from(ctx.facts.calls.len()) {
                if i != NO_GROUP {
                    *group = i;
                }
            }
        }
        // A fact recorded counts toward max_facts (in compact mode a group counts once).
        ctx.recorded += 1;
        self.facts_recorded();
        let args = args(self);
        ctx.facts.calls.push(CallFact {
            pickle: self.index,
            offset: at,
            opcode,
            target: target.map(|t| t as usize),
            args,
            count: 1,
        });
    }

    /// Record a PERSID / BINPERSID (grouped per opcode in compact mode).
    fn add_persistent_id(&mut self, ctx: &mut Ctx, at: usize, opcode: u8) {
        if ctx.compact {
            let group = &mut self.persid_groups[usize::from(opcode == op::BINPERSID)];
            if *group != NO_GROUP {
                ctx.facts.persistent_ids[*group as usize].count += 1;
                return;
            }
            if let Ok(i) = u32::try_from(ctx.facts.persistent_ids.len()) {
                if i != NO_GROUP {
                    *group = i;
                }
            }
        }
        ctx.recorded += 1;
        self.facts_recorded();
        ctx.facts.persistent_ids.push(PersIdFact {
            pickle: self.index,
            offset: at,
            opcode,
            count: 1,
        });
    }

    /// Decoded text of a str literal, at most `max_string` code points.
    fn text_of(&self, ctx: &Ctx, kind: SKind, off: usize, len: usize) -> (Text, bool) {
        let raw = &self.data[off..off + len];
        let max = ctx.max_string;
        match kind {
            SKind::Utf8 | SKind::LegacyUtf8 => utf8_prefix(raw, max),
            SKind::LegacyLatin1 => decode_latin1(raw, max),
            SKind::EscapedUtf8 | SKind::EscapedLatin1 => {
                let limit = max.saturating_add(1).saturating_mul(4);
                let (bytes, cut) = escape_decode_prefix(raw, limit);
                let (t, more) = if kind == SKind::EscapedUtf8 {
                    utf8_prefix(&bytes, max)
                } else {
                    decode_latin1(&bytes, max)
                };
                (t, more || cut)
            }
            SKind::RawUnicodeEscape => raw_unicode_escape_prefix(raw, max).unwrap_or_default(),
            SKind::Bytes | SKind::Bytearray => (Text::default(), false),
        }
    }

    // -- joblib -------------------------------------------------------------------------

    fn new_obj(&mut self, o: Obj) -> Step<u32> {
        if self.objs.len() >= MAX_OBJS {
            return match o {
                Obj::Dtype(_) => Ok(NO_OBJ),
                Obj::Wrapper(_) => err(ErrorCode::JoblibArrayUnknown),
            };
        }
        self.objs.push(o);
        Ok((self.objs.len() - 1) as u32)
    }

    /// The tracked object a call creates (joblib mode): wrappers, dtypes, or MAYBE_OBJ when
    /// an unknown callable might have produced a wrapper. The usual answer (an untracked
    /// callable: none) is given here, in the loop; the tracked kinds in `instantiate_kind`.
    #[inline(always)]
    fn instantiate(&mut self, ctx: &Ctx, how: How, callee: Val, src: ArgSrc) -> Step<u32> {
        if !self.joblib {
            return Ok(NO_OBJ);
        }
        let g = match callee {
            Val::Global(g) => g as usize,
            Val::Result { .. } | Val::Unknown => return Ok(MAYBE_OBJ),
            _ => return Ok(NO_OBJ),
        };
        let kind = ctx.gkind.get(g).copied().unwrap_or(GKind::Other);
        if matches!(kind, GKind::Other | GKind::Object | GKind::SetState) {
            return Ok(NO_OBJ);
        }
        self.instantiate_kind(ctx, how, kind, src)
    }

    #[inline(never)]
    fn instantiate_kind(&mut self, ctx: &Ctx, how: How, kind: GKind, src: ArgSrc) -> Step<u32> {
        let owned: Option<Vec<Val>> = match src {
            ArgSrc::Tuple(v) => self.tuples.complete(&v).map(<[Val]>::to_vec),
            ArgSrc::Stack(a, b) => Some(self.stack[a..b].to_vec()),
            ArgSrc::Owned(v) => v,
        };
        let args = owned.as_deref();
        match kind {
            GKind::Wrapper => {
                let info = match (how, args) {
                    (How::New | How::NewEx, _) => WrapperInfo::new(),
                    (How::Call, Some(a)) if (4..=6).contains(&a.len()) => WrapperInfo {
                        shape: Some(a[1]),
                        dtype: Some(a[3]),
                        align: Some(if a.len() == 6 { a[5] } else { Val::Int(16) }),
                        ..WrapperInfo::new()
                    },
                    _ => WrapperInfo::unknown(),
                };
                self.new_obj(Obj::Wrapper(info))
            }
            GKind::Dtype => {
                let info = match how {
                    How::NewEx => DtypeInfo::unknown(),
                    _ => dtype_from_args(self.data, args),
                };
                self.new_obj(Obj::Dtype(info))
            }
            GKind::Reconstructor if how == How::Call => match args {
                Some([cls, base, _]) => match cls {
                    Val::Global(c) => match ctx.gkind.get(*c as usize) {
                        Some(GKind::Wrapper) => {
                            let plain = matches!(base, Val::Global(b)
                                if ctx.gkind.get(*b as usize) == Some(&GKind::Object));
                            let info = if plain {
                                WrapperInfo::new()
                            } else {
                                WrapperInfo::unknown()
                            };
                            self.new_obj(Obj::Wrapper(info))
                        }
                        _ => Ok(NO_OBJ),
                    },
                    Val::Result { .. } | Val::Unknown => Ok(MAYBE_OBJ),
                    _ => Ok(NO_OBJ),
                },
                _ => Ok(MAYBE_OBJ),
            },
            GKind::NewObj if how == How::Call => match args {
                Some([cls, rest @ ..]) => {
                    self.instantiate(ctx, How::New, *cls, ArgSrc::Owned(Some(rest.to_vec())))
                }
                _ => Ok(MAYBE_OBJ),
            },
            GKind::NewObjEx if how == How::Call => match args {
                Some([cls, _, _]) => self.instantiate(ctx, How::NewEx, *cls, ArgSrc::Owned(None)),
                _ => Ok(MAYBE_OBJ),
            },
            _ => Ok(NO_OBJ),
        }
    }

    /// Could BUILD's `state` change an untracked object's class (slotstate `__class__`)?
    fn slot_may_set_class(&self, ctx: &Ctx, state: &Val) -> bool {
        let slot = match (state, self.tuples.complete(state)) {
            (Val::Tuple(_), Some([_, slot])) => slot,
            (Val::Unknown | Val::Result { .. } | Val::Global(_), _) => return true,
            _ => return false,
        };
        if slot.known_falsy() {
            return false;
        }
        match slot {
            Val::Dict(id) => match self.dicts.get(id) {
                Some(info) => {
                    info.tainted
                        || match &info.class {
                            None => false,
                            Some(Val::Global(g)) => {
                                ctx.gkind.get(*g as usize) == Some(&GKind::Wrapper)
                            }
                            Some(_) => true,
                        }
                }
                None => self.dict_overflow,
            },
            Val::Unknown | Val::Result { .. } | Val::Global(_) => true,
            _ => false,
        }
    }

    /// Apply a BUILD state (`pickle._Unpickler.load_build`) to wrapper `w`.
    fn wrapper_setstate(&self, ctx: &Ctx, w: &mut WrapperInfo, state: &Val) {
        let (d, slot) = match self.tuples.complete(state) {
            Some([d, slot]) => (d, Some(slot)),
            _ => (state, None),
        };
        let apply = |w: &mut WrapperInfo, v: &Val, setattr: bool| {
            if v.known_falsy() {
                return;
            }
            let id = match v {
                Val::Dict(id) => *id,
                _ => {
                    w.unknown = true;
                    return;
                }
            };
            let info = match self.dicts.get(&id) {
                Some(info) => info,
                None => {
                    if self.dict_overflow {
                        w.unknown = true;
                    }
                    return;
                }
            };
            if info.tainted {
                w.unknown = true;
            }
            if let Some(v) = &info.shape {
                w.shape = Some(*v);
            }
            if let Some(v) = &info.dtype {
                w.dtype = Some(*v);
            }
            if let Some(v) = &info.align {
                w.align = Some(*v);
            }
            if setattr {
                match &info.class {
                    None => {}
                    Some(Val::Global(g)) if ctx.gkind.get(*g as usize) == Some(&GKind::Wrapper) => {
                    }
                    Some(Val::Global(_)) => {
                        // Another class now: its BUILD may work differently from here on.
                        w.is_wrapper = false;
                        w.unknown = true;
                    }
                    Some(_) => w.unknown = true,
                }
            }
        };
        apply(w, d, false);
        if let Some(s) = slot {
            apply(w, s, true);
        }
    }

    /// joblib's `load_build` after the standard BUILD: a wrapper on the stack is replaced by
    /// its array, read from the file (raw bytes, or a nested pickle for object arrays).
    fn joblib_build(&mut self, ctx: &mut Ctx, at: usize, state: &Val) -> Step<()> {
        let obj = match self.stack.last() {
            Some(Val::Result { target, .. })
                if ctx.gkind.get(*target as usize) == Some(&GKind::SetState) =>
            {
                return Ok(()); // its __setstate__ takes the state: it stays what it is
            }
            Some(Val::Result { obj, .. }) => *obj,
            Some(Val::Unknown) => MAYBE_OBJ,
            Some(Val::Global(_)) => {
                if !state.known_falsy() {
                    self.wrapper_class_tainted = true;
                }
                NO_OBJ
            }
            _ => NO_OBJ,
        };
        if obj == MAYBE_OBJ {
            return if self.saw_wrapper {
                err(ErrorCode::JoblibArrayUnknown)
            } else {
                Ok(())
            };
        }
        if obj == NO_OBJ {
            return if self.saw_wrapper && self.slot_may_set_class(ctx, state) {
                err(ErrorCode::JoblibArrayUnknown)
            } else {
                Ok(())
            };
        }
        let o = obj as usize;
        match self.objs[o].clone() {
            Obj::Dtype(mut d) => {
                if !d.fresh {
                    // numpy's shared dtype object is being modified
                    ctx.dtype_poisoned = true;
                    d.known = false;
                } else {
                    match dtype_setstate(&self.tuples, &d, state) {
                        Some((itemsize, hasobject)) => {
                            d.itemsize = itemsize;
                            d.hasobject = hasobject;
                        }
                        None => d.known = false,
                    }
                }
                self.objs[o] = Obj::Dtype(d);
                Ok(())
            }
            Obj::Wrapper(mut w) => {
                self.wrapper_setstate(ctx, &mut w, state);
                let read = w.is_wrapper;
                let w2 = w.clone();
                self.objs[o] = Obj::Wrapper(w);
                if read {
                    self.joblib_read(ctx, at, &w2)?;
                    self.set_top(Val::Other)?;
                }
                Ok(())
            }
        }
    }

    /// The array data joblib reads after a wrapper's BUILD.
    fn joblib_read(&mut self, ctx: &mut Ctx, at: usize, w: &WrapperInfo) -> Step<()> {
        let unknown = err(ErrorCode::JoblibArrayUnknown);
        if w.unknown || self.wrapper_class_tainted || ctx.dtype_poisoned {
            return unknown;
        }
        let dt = match &w.dtype {
            Some(Val::Result { obj, .. }) if *obj < MAYBE_OBJ => match &self.objs[*obj as usize] {
                Obj::Dtype(d) if d.known => *d,
                _ => return unknown,
            },
            _ => return unknown,
        };
        let count: i64 = if dt.hasobject {
            0
        } else {
            match w.shape.as_ref().and_then(|s| self.tuples.complete(s)) {
                Some(items) => {
                    let mut c: i64 = 1;
                    for v in items {
                        match v {
                            Val::Int(d) if *d >= 0 => match c.checked_mul(*d) {
                                Some(x) => c = x,
                                None => return unknown,
                            },
                            _ => return unknown,
                        }
                    }
                    c
                }
                _ => return unknown,
            }
        };
        if !dt.hasobject && dt.itemsize <= 0 {
            return unknown;
        }
        if self.in_frame && self.pos < self.frame_end {
            self.violation(at, FrameViolationKind::JoblibDataInFrame);
        }
        let start = self.file_pos();
        if dt.hasobject {
            if ctx.facts.pickles.len() as u64 >= ctx.limits.max_pickles {
                return Err(Halt::Limit(LimitKind::Pickles));
            }
            ctx.total = self.total_base + self.ops();
            let (end, fp) = run_pickle(self.data, start, Some(self.index), false, ctx);
            self.total_base = ctx.total - self.ops();
            self.facts_recorded();
            if end.is_none() {
                let child = &ctx.facts.pickles[ctx.facts.pickles.len() - 1];
                return Err(Halt::Nested(child.status, child.error, child.error_offset));
            }
            self.set_file_pos(fp);
            return Ok(());
        }
        let nbytes = match count.checked_mul(dt.itemsize) {
            Some(b) => b as u64,
            None => return unknown,
        };
        let padding = match &w.align {
            None | Some(Val::None) => 0usize,
            Some(_) => {
                if start >= self.n {
                    return Err(Halt::Truncated);
                }
                1 + self.data[start] as usize
            }
        };
        let left = (self.n - start) as u64;
        if padding as u64 > left || nbytes > left - padding as u64 {
            return Err(Halt::Truncated);
        }
        let length = padding + nbytes as usize;
        ctx.facts.raw_spans.push(RawSpan {
            pickle: self.index,
            offset: start,
            length,
            padding,
        });
        ctx.recorded += 1;
        self.facts_recorded();
        self.set_file_pos(start + length);
        Ok(())
    }

    // -- one opcode ---------------------------------------------------------------------

    fn push_int_line(&mut self, l: &[u8], long: bool) -> Step<()> {
        let l = if long { strip_long_suffix(l) } else { l };
        if !lenient_number(l, false) {
            return err(ErrorCode::BadArgument);
        }
        let v = if !long && l == b"00" {
            Val::Bool(false)
        } else if !long && l == b"01" {
            Val::Bool(true)
        } else {
            match parse_plain_int(l) {
                Some(i) => Val::Int(i),
                None => Val::Other,
            }
        };
        self.stack.push(v);
        Ok(())
    }

    #[inline(always)]
    fn exec(&mut self, code: u8, at: usize, ctx: &mut Ctx) -> Step<()> {
        use op::*;
        match code {
            STOP => {
                self.pop()?;
                if self.file_pos() > self.pos {
                    self.violation(self.frame_at, FrameViolationKind::FramePastStop);
                }
                return Err(Halt::Stop);
            }
            MARK => self.marks.push(self.stack.len()),
            POP => {
                if self.stack.len() > self.base() {
                    self.stack.pop();
                } else if self.marks.pop().is_none() {
                    return err(ErrorCode::StackUnderflow);
                }
            }

            // -- numbers and other untracked values ------------------------------------
            NONE => self.stack.push(Val::None),
            NEWTRUE => self.stack.push(Val::Bool(true)),
            NEWFALSE => self.stack.push(Val::Bool(false)),
            EMPTY_TUPLE => self.stack.push(Val::EmptyTuple),
            EMPTY_DICT => {
                let d = self.new_dict();
                self.stack.push(d);
            }
            EMPTY_LIST | EMPTY_SET | NEXT_BUFFER => self.stack.push(Val::Other),
            BININT => {
                let v = self.i32()?;
                self.stack.push(Val::Int(v as i64));
            }
            BININT1 => {
                let v = self.u8()?;
                self.stack.push(Val::Int(v as i64));
            }
            BININT2 => {
                let v = self.u16()?;
                self.stack.push(Val::Int(v as i64));
            }
            BINFLOAT => {
                self.take(8)?;
                self.stack.push(Val::Other);
            }
            SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                let n = match code {
                    SHORT_BINBYTES => self.u8()? as u64,
                    BINBYTES => self.u32()? as u64,
                    _ => self.u64()?,
                };
                let b = self.take(n)?;
                let kind = if code == BYTEARRAY8 {
                    SKind::Bytearray
                } else {
                    SKind::Bytes
                };
                let off = self.offset_of(b);
                self.stack.push(Val::span(kind, off, b.len()));
            }

            // -- strings ---------------------------------------------------------------
            SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                let n = match code {
                    SHORT_BINUNICODE => self.u8()? as u64,
                    BINUNICODE => self.u32()? as u64,
                    _ => self.u64()?,
                };
                let raw = self.take(n)?;
                let off = self.offset_of(raw);
                if !check_utf8(ctx, raw, off, true) {
                    return err(ErrorCode::BadArgument);
                }
                self.stack.push(Val::span(SKind::Utf8, off, raw.len()));
            }

            // -- containers ------------------------------------------------------------
            TUPLE1 => {
                let v = *self.top()?;
                let t = self.tuples.make(std::slice::from_ref(&v));
                self.set_top(t)?;
            }
            TUPLE2 | TUPLE3 => {
                let n = if code == TUPLE2 { 2 } else { 3 };
                self.need(n)?;
                let keep = self.stack.len() - n;
                let t = self.tuples.make(&self.stack[keep..]);
                self.stack.truncate(keep);
                self.stack.push(t);
            }
            TUPLE => {
                let m = self.pop_mark()?;
                let t = self.tuples.make(&self.stack[m..]);
                self.stack.truncate(m);
                self.stack.push(t);
            }
            // Filling a container calls its append/extend/__setitem__/add: recorded as a call
            // when the container is an imported global (e.g. `os.environ[...] = ...`).
            APPEND => {
                self.need(2)?;
                let v = self.stack.pop().unwrap_or(Val::Other);
                if let Some(Val::Global(g)) = self.stack.last() {
                    let g = *g;
                    self.add_call(ctx, at, code, Some(g), |_| {
                        arg_facts(std::slice::from_ref(&v), 0)
                    });
                }
            }
            APPENDS | ADDITEMS => {
                let m = self.pop_mark()?;
                if m <= self.base() {
                    return err(ErrorCode::StackUnderflow);
                }
                if let Val::Global(g) = self.stack[m - 1] {
                    self.add_call(ctx, at, code, Some(g), |s| arg_facts(&s.stack[m..], 0));
                }
                self.stack.truncate(m);
            }
            SETITEM => {
                self.need(3)?;
                let len = self.stack.len();
                match self.stack[len - 3] {
                    Val::Global(g) => {
                        self.add_call(ctx, at, code, Some(g), |s| {
                            arg_facts(&s.stack[len - 2..], 0)
                        });
                    }
                    Val::Dict(id) => track_pairs(
                        self.data,
                        &mut self.dicts,
                        &mut self.dict_overflow,
                        id,
                        &self.stack[len - 2..],
                    ),
                    _ => {}
                }
                self.stack.truncate(len - 2);
            }
            SETITEMS => {
                let m = self.pop_mark()?;
                if m <= self.base() {
                    return err(ErrorCode::StackUnderflow);
                }
                if !(self.stack.len() - m).is_multiple_of(2) {
                    return err(ErrorCode::BadArgument);
                }
                match self.stack[m - 1] {
                    Val::Global(g) => {
                        self.add_call(ctx, at, code, Some(g), |s| arg_facts(&s.stack[m..], 0));
                    }
                    Val::Dict(id) => track_pairs(
                        self.data,
                        &mut self.dicts,
                        &mut self.dict_overflow,
                        id,
                        &self.stack[m..],
                    ),
                    _ => {}
                }
                self.stack.truncate(m);
            }

            // -- memo ------------------------------------------------------------------
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
            BINGET => {
                let k = self.u8()?;
                self.memo_get(k as u64)?;
            }
            LONG_BINGET => {
                let k = self.u32()?;
                self.memo_get(k as u64)?;
            }

            // -- calls -----------------------------------------------------------------
            BUILD => {
                self.need(2)?;
                let state = self.stack.pop().unwrap_or(Val::Other);
                let target = match self.stack.last() {
                    Some(Val::Global(g)) => *g,
                    Some(Val::Result { target, .. }) => *target,
                    _ => NO_GLOBAL,
                };
                self.add_call(ctx, at, code, Some(target), |_| {
                    arg_facts(std::slice::from_ref(&state), 0)
                });
                if self.joblib {
                    self.joblib_build(ctx, at, &state)?;
                }
            }
            // (REDUCE calls the callable with the tuple; NEWOBJ / NEWOBJ_EX call cls.__new__)
            REDUCE | NEWOBJ | NEWOBJ_EX => {
                let n = if code == NEWOBJ_EX { 3 } else { 2 };
                self.need(n)?;
                if code == NEWOBJ_EX {
                    self.stack.pop();
                }
                let args = self.stack.pop().unwrap_or(Val::Other);
                let callee = self.stack.last().copied().unwrap_or(Val::Other);
                let target = match callee {
                    Val::Global(g) => g,
                    _ => NO_GLOBAL,
                };
                self.add_call(ctx, at, code, Some(target), |s| s.tuples.args(&args));
                let how = match code {
                    REDUCE => How::Call,
                    NEWOBJ => How::New,
                    _ => How::NewEx,
                };
                let obj = self.instantiate(ctx, how, callee, ArgSrc::Tuple(args))?;
                self.set_top(Val::Result { target, obj })?;
            }

            // -- persistent ids --------------------------------------------------------
            BINPERSID => {
                self.pop()?;
                self.add_persistent_id(ctx, at, code);
                self.stack.push(Val::Unknown);
            }
            _ => return self.exec_rare(code, at, ctx),
        }
        Ok(())
    }

    /// The opcodes ordinary model files use rarely (text forms, frames, extension codes, ...),
    /// out of [`Machine::exec`] so that its hot loop stays small.
    #[inline(never)]
    fn exec_rare(&mut self, code: u8, at: usize, ctx: &mut Ctx) -> Step<()> {
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
                let len = self.u64()?;
                if len > i64::MAX as u64 {
                    return err(ErrorCode::BadArgument);
                }
                let p = self.pos;
                if self.in_frame && p < self.frame_end {
                    self.violation(at, FrameViolationKind::FrameInFrame);
                }
                let end = p.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
                if end > self.n {
                    self.violation(at, FrameViolationKind::FrameBeyondData);
                }
                let fp = self.file_pos().max(end.min(self.n));
                self.in_frame = true;
                self.frame_at = at;
                self.frame_end = end;
                self.ffp = fp;
                self.avail = end.min(self.n);
            }
            POP_MARK => {
                let m = self.pop_mark()?;
                self.stack.truncate(m);
            }
            DUP => {
                let v = *self.top()?;
                self.stack.push(v);
            }
            INT | LONG => {
                let l = self.line(ctx)?;
                self.push_int_line(l, code == LONG)?;
            }
            FLOAT => {
                let l = self.line(ctx)?;
                if !lenient_number(l, true) {
                    return err(ErrorCode::BadArgument);
                }
                self.stack.push(Val::Other);
            }
            LONG1 | LONG4 => {
                let n: u64 = if code == LONG1 {
                    self.u8()? as u64
                } else {
                    let n = self.i32()?;
                    if n < 0 {
                        return err(ErrorCode::NegativeLength);
                    }
                    n as u64
                };
                let b = self.take(n)?;
                self.stack.push(match decode_long_le(b) {
                    Some(i) => Val::Int(i),
                    None => Val::Other,
                });
            }
            // The top becomes a read-only view of itself, or stays as it is: keep its symbol.
            READONLY_BUFFER => {
                self.need(1)?;
            }
            STRING => {
                let l = self.line(ctx)?;
                let n = l.len();
                if n < 2 || l[0] != l[n - 1] || (l[0] != b'\'' && l[0] != b'"') {
                    return err(ErrorCode::BadArgument);
                }
                let body = &l[1..n - 1];
                let off = self.offset_of(body);
                let kind = match escape_scan(ctx, body, off) {
                    Some(true) => SKind::EscapedUtf8,
                    Some(false) => SKind::EscapedLatin1,
                    None => return err(ErrorCode::BadArgument),
                };
                self.stack.push(Val::span(kind, off, body.len()));
            }
            BINSTRING | SHORT_BINSTRING => {
                let n = if code == BINSTRING {
                    let n = self.i32()?;
                    if n < 0 {
                        return err(ErrorCode::NegativeLength);
                    }
                    n as u64
                } else {
                    self.u8()? as u64
                };
                let raw = self.take(n)?;
                let off = self.offset_of(raw);
                let kind = if check_utf8(ctx, raw, off, false) {
                    SKind::LegacyUtf8
                } else {
                    SKind::LegacyLatin1
                };
                self.stack.push(Val::span(kind, off, raw.len()));
            }
            UNICODE => {
                let l = self.line(ctx)?;
                let off = self.offset_of(l);
                if !raw_unicode_escape_scan(ctx, l, off) {
                    return err(ErrorCode::BadArgument);
                }
                self.stack
                    .push(Val::span(SKind::RawUnicodeEscape, off, l.len()));
            }
            LIST | FROZENSET => {
                let m = self.pop_mark()?;
                self.stack.truncate(m);
                self.stack.push(Val::Other);
            }
            DICT => {
                let m = self.pop_mark()?;
                if !(self.stack.len() - m).is_multiple_of(2) {
                    return err(ErrorCode::BadArgument);
                }
                let d = self.new_dict();
                if let Val::Dict(id) = d {
                    track_pairs(
                        self.data,
                        &mut self.dicts,
                        &mut self.dict_overflow,
                        id,
                        &self.stack[m..],
                    );
                }
                self.stack.truncate(m);
                self.stack.push(d);
            }
            PUT => {
                let l = self.line(ctx)?;
                self.need(1)?;
                let key = match parse_memo_key(l) {
                    MemoKey::Key(k) => k,
                    MemoKey::Negative | MemoKey::Invalid => return err(ErrorCode::BadArgument),
                };
                self.memo_put(key)?;
            }
            GET => {
                let l = self.line(ctx)?;
                match parse_memo_key(l) {
                    MemoKey::Key(k) => self.memo_get(k)?,
                    MemoKey::Negative => return err(ErrorCode::MemoMissing),
                    MemoKey::Invalid => return err(ErrorCode::BadArgument),
                }
            }
            GLOBAL | INST => {
                let ascii_only = code == INST;
                let max = ctx.max_string;
                let m = self.line(ctx)?;
                let (module, mt) = match decode_line_name(m, ascii_only, max) {
                    Some(t) => t,
                    None => return err(ErrorCode::BadArgument),
                };
                let n = self.line(ctx)?;
                let (name, nt) = match decode_line_name(n, ascii_only, max) {
                    Some(t) => t,
                    None => return err(ErrorCode::BadArgument),
                };
                let g = self.add_global(
                    ctx,
                    at,
                    code,
                    Resolution::Literal,
                    Some((module, name, mt || nt)),
                );
                if code == INST {
                    let mk = self.pop_mark()?;
                    self.add_call(ctx, at, INST, Some(g), |s| arg_facts(&s.stack[mk..], 0));
                    let len = self.stack.len();
                    let how = if len == mk { How::New } else { How::Call };
                    let obj = self.instantiate(ctx, how, Val::Global(g), ArgSrc::Stack(mk, len))?;
                    self.stack.truncate(mk);
                    self.stack.push(Val::Result { target: g, obj });
                } else {
                    self.stack.push(Val::Global(g));
                }
            }
            STACK_GLOBAL => {
                self.need(2)?;
                let name = self.stack.pop().unwrap_or(Val::Other);
                let module = self.stack.pop().unwrap_or(Val::Other);
                let g = match (module.lit(), name.lit()) {
                    (Some((mk, mm, mo, ml)), Some((nk, nm, no, nl)))
                        if mk.is_str() && nk.is_str() =>
                    {
                        let res = if mm || nm {
                            Resolution::Memo
                        } else {
                            Resolution::Literal
                        };
                        let (mt, mc) = self.text_of(ctx, mk, mo, ml);
                        let (nt, nc) = self.text_of(ctx, nk, no, nl);
                        self.add_global(ctx, at, code, res, Some((mt, nt, mc || nc)))
                    }
                    _ => self.add_global(ctx, at, code, Resolution::Computed, None),
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
                ctx.facts.ext.push(ExtFact {
                    pickle: self.index,
                    offset: at,
                    opcode: code,
                    code: ext_code,
                });
                ctx.recorded += 1;
                self.facts_recorded();
                self.stack.push(Val::Unknown);
            }
            OBJ => {
                let m = self.pop_mark()?;
                if self.stack.len() == m {
                    return err(ErrorCode::StackUnderflow);
                }
                let cls = self.stack[m];
                let target = match cls {
                    Val::Global(g) => g,
                    _ => NO_GLOBAL,
                };
                self.add_call(ctx, at, code, Some(target), |s| {
                    arg_facts(&s.stack[m + 1..], 0)
                });
                let len = self.stack.len();
                let how = if len == m + 1 { How::New } else { How::Call };
                let obj = self.instantiate(ctx, how, cls, ArgSrc::Stack(m + 1, len))?;
                self.stack.truncate(m);
                self.stack.push(Val::Result { target, obj });
            }
            PERSID => {
                let l = self.line(ctx)?;
                if !l.is_ascii() {
                    return err(ErrorCode::BadArgument);
                }
                self.add_persistent_id(ctx, at, code);
                self.stack.push(Val::Unknown);
            }
            _ => {
                // not an opcode: not executed, so not counted (the loop counted it before `exec`)
                self.left += 1;
                ctx.facts.opcode_counts[code as usize] -= 1;
                return err(ErrorCode::InvalidOpcode);
            }
        }
        Ok(())
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

/// The value of INT/LONG text when it is a plain decimal (`[+-]?(0|[1-9][0-9]*)` after
/// whitespace) within [`TRACKED_INT`]; anything else is not tracked.
fn parse_plain_int(l: &[u8]) -> Option<i64> {
    let s = strip_py_space(l);
    let (neg, d) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if d.is_empty() || d.len() > 19 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if d.len() > 1 && d[0] == b'0' {
        return None;
    }
    let mut v: i128 = 0;
    for &b in d {
        v = v * 10 + (b - b'0') as i128;
    }
    if neg {
        v = -v;
    }
    i64::try_from(v).ok().and_then(tracked_int)
}

/// `i` when it is within [`TRACKED_INT`].
fn tracked_int(i: i64) -> Option<i64> {
    (-TRACKED_INT..TRACKED_INT).contains(&i).then_some(i)
}

/// LONG1/LONG4 payload (little-endian two's complement) when within [`TRACKED_INT`].
fn decode_long_le(b: &[u8]) -> Option<i64> {
    if b.len() > 8 {
        return None;
    }
    let mut buf = match b.last() {
        Some(&last) if last & 0x80 != 0 => [0xFFu8; 8],
        _ => [0u8; 8],
    };
    buf[..b.len()].copy_from_slice(b);
    tracked_int(i64::from_le_bytes(buf))
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

enum Utf8Check {
    Ok,
    /// Valid up to this index, where an incomplete sequence ends the input.
    Incomplete(usize),
    Invalid,
}

/// UTF-8 check, optionally also accepting encoded surrogates (Python's `surrogatepass`).
fn utf8_check(b: &[u8], surrogatepass: bool) -> Utf8Check {
    let mut i = 0;
    loop {
        match std::str::from_utf8(&b[i..]) {
            Ok(_) => return Utf8Check::Ok,
            Err(e) => {
                let k = i + e.valid_up_to();
                let r = &b[k..];
                if surrogatepass
                    && r.len() >= 3
                    && r[0] == 0xED
                    && (0xA0..=0xBF).contains(&r[1])
                    && (0x80..=0xBF).contains(&r[2])
                {
                    i = k + 3;
                    continue;
                }
                let incomplete = match e.error_len() {
                    None => true,
                    Some(_) => {
                        surrogatepass
                            && r[0] == 0xED
                            && r.len() < 3
                            && r[1..].iter().all(|c| (0xA0..=0xBF).contains(c))
                    }
                };
                return if incomplete {
                    Utf8Check::Incomplete(k)
                } else {
                    Utf8Check::Invalid
                };
            }
        }
    }
}

fn is_utf8(b: &[u8], surrogatepass: bool) -> bool {
    matches!(utf8_check(b, surrogatepass), Utf8Check::Ok)
}

/// [`is_utf8`] in chunks, reporting progress (payload at data offset `off`).
#[inline(always)]
fn check_utf8(ctx: &mut Ctx, b: &[u8], off: usize, surrogatepass: bool) -> bool {
    if b.len() <= 32 && b.iter().all(|&c| c < 0x80) {
        return true;
    }
    check_utf8_slow(ctx, b, off, surrogatepass)
}

#[inline(never)]
fn check_utf8_slow(ctx: &mut Ctx, b: &[u8], off: usize, surrogatepass: bool) -> bool {
    if b.len() <= PROGRESS_STEP {
        let ok = is_utf8(b, surrogatepass);
        if b.len() > 1 << 16 {
            ctx.progress(off + b.len());
        }
        return ok;
    }
    let mut i = 0;
    while i < b.len() {
        let j = (i + PROGRESS_STEP).min(b.len());
        match utf8_check(&b[i..j], surrogatepass) {
            Utf8Check::Ok => i = j,
            Utf8Check::Incomplete(k) if j < b.len() && k > 0 => i += k,
            _ => return false,
        }
        ctx.progress(off + i);
    }
    true
}

/// The first `max` code points of (surrogate-tolerant) UTF-8 that is known to be valid (or
/// valid up to an incomplete tail beyond those code points).
fn utf8_prefix(b: &[u8], max: usize) -> (Text, bool) {
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
    let surrogates = bytes.windows(2).any(|w| w[0] == 0xED && w[1] >= 0xA0);
    (Text { bytes, surrogates }, truncated)
}

/// Decode UTF-8 (strict, or with `surrogatepass`) keeping the first `max` code points.
/// `None` if the bytes do not decode.
pub fn decode_utf8(b: &[u8], surrogatepass: bool, max: usize) -> Option<(Text, bool)> {
    if !is_utf8(b, surrogatepass) {
        return None;
    }
    Some(utf8_prefix(b, max))
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
#[cfg_attr(not(test), allow(dead_code))]
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

/// Strict UTF-8 validation one byte at a time (for bytes produced by unescaping).
struct Utf8Dfa {
    need: u8,
    lo: u8,
    hi: u8,
    ok: bool,
}

impl Utf8Dfa {
    fn new() -> Self {
        Utf8Dfa {
            need: 0,
            lo: 0x80,
            hi: 0xBF,
            ok: true,
        }
    }

    fn push(&mut self, b: u8) {
        if !self.ok {
            return;
        }
        if self.need == 0 {
            let (need, lo, hi) = match b {
                0x00..=0x7F => return,
                0xC2..=0xDF => (1, 0x80, 0xBF),
                0xE0 => (2, 0xA0, 0xBF),
                0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                0xED => (2, 0x80, 0x9F),
                0xF0 => (3, 0x90, 0xBF),
                0xF1..=0xF3 => (3, 0x80, 0xBF),
                0xF4 => (3, 0x80, 0x8F),
                _ => {
                    self.ok = false;
                    return;
                }
            };
            self.need = need;
            self.lo = lo;
            self.hi = hi;
        } else if b < self.lo || b > self.hi {
            self.ok = false;
        } else {
            self.need -= 1;
            self.lo = 0x80;
            self.hi = 0xBF;
        }
    }

    fn finish(&self) -> bool {
        self.ok && self.need == 0
    }
}

/// Walk CPython's `codecs.escape_decode` (strict) over `s`, passing each output byte (and the
/// input index reached) to `emit`, which returns false to stop. None on an invalid escape;
/// Some(false) if `emit` stopped the walk.
fn escape_walk(s: &[u8], mut emit: impl FnMut(usize, u8) -> bool) -> Option<bool> {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            if !emit(i, c) {
                return Some(false);
            }
            continue;
        }
        if i >= s.len() {
            return None; // trailing backslash
        }
        let e = s[i];
        i += 1;
        let byte = match e {
            b'\n' => continue,
            b'\\' => b'\\',
            b'\'' => b'\'',
            b'"' => b'"',
            b'b' => 0x08,
            b'f' => 0x0c,
            b't' => b'\t',
            b'n' => b'\n',
            b'r' => b'\r',
            b'v' => 0x0b,
            b'a' => 0x07,
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
                (v & 0xFF) as u8
            }
            b'x' => {
                if i + 1 < s.len() {
                    if let (Some(h), Some(l)) = (hex_value(s[i]), hex_value(s[i + 1])) {
                        i += 2;
                        ((h << 4) | l) as u8
                    } else {
                        return None;
                    }
                } else {
                    return None; // invalid \x escape
                }
            }
            _ => {
                // Unknown escape: keep the backslash, reread the character normally.
                i -= 1;
                b'\\'
            }
        };
        if !emit(i, byte) {
            return Some(false);
        }
    }
    Some(true)
}

/// CPython's `codecs.escape_decode` (the STRING opcode's unescaping), strict errors.
pub fn escape_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    escape_walk(s, |_, b| {
        out.push(b);
        true
    })?;
    Some(out)
}

/// The first `limit` bytes of a valid escaped string, and whether more followed.
fn escape_decode_prefix(s: &[u8], limit: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut cut = false;
    escape_walk(s, |_, b| {
        if out.len() >= limit {
            cut = true;
            return false;
        }
        out.push(b);
        true
    });
    (out, cut)
}

/// Validate STRING text (offset `off`): None if an escape is invalid, else whether the
/// unescaped bytes are valid UTF-8.
fn escape_scan(ctx: &mut Ctx, s: &[u8], off: usize) -> Option<bool> {
    let mut dfa = Utf8Dfa::new();
    let mut next = PROGRESS_STEP;
    escape_walk(s, |i, b| {
        dfa.push(b);
        if i >= next {
            ctx.progress(off + i);
            next += PROGRESS_STEP;
        }
        true
    })?;
    Some(dfa.finish())
}

fn hex_value(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u32),
        b'a'..=b'f' => Some((b - b'a' + 10) as u32),
        b'A'..=b'F' => Some((b - b'A' + 10) as u32),
        _ => None,
    }
}

/// Walk CPython's `raw-unicode-escape` decoder over `s`, passing code points to `emit`
/// (false stops). None if an escape is invalid; Some(false) if `emit` stopped.
fn raw_unicode_escape_walk(s: &[u8], mut emit: impl FnMut(usize, u32) -> bool) -> Option<bool> {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            if !emit(i, c as u32) {
                return Some(false);
            }
            continue;
        }
        if i >= s.len() {
            emit(i, b'\\' as u32);
            break;
        }
        let e = s[i];
        i += 1;
        let count = match e {
            b'u' => 4,
            b'U' => 8,
            _ => {
                if !emit(i, b'\\' as u32) || !emit(i, e as u32) {
                    return Some(false);
                }
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
        if !emit(i, cp) {
            return Some(false);
        }
    }
    Some(true)
}

/// CPython's `raw-unicode-escape` decoder (the UNICODE opcode), keeping `max` code points.
pub fn raw_unicode_escape_decode(s: &[u8], max: usize) -> Option<(Text, bool)> {
    let mut t = TextBuilder::new(max);
    raw_unicode_escape_walk(s, |_, cp| {
        t.push(cp);
        true
    })?;
    Some(t.finish())
}

/// [`raw_unicode_escape_decode`] of text already validated: stops after `max` code points.
fn raw_unicode_escape_prefix(s: &[u8], max: usize) -> Option<(Text, bool)> {
    let mut t = TextBuilder::new(max);
    raw_unicode_escape_walk(s, |_, cp| {
        t.push(cp);
        !t.truncated
    })?;
    Some(t.finish())
}

/// Validate UNICODE text (offset `off`).
fn raw_unicode_escape_scan(ctx: &mut Ctx, s: &[u8], off: usize) -> bool {
    let mut next = PROGRESS_STEP;
    raw_unicode_escape_walk(s, |i, _| {
        if i >= next {
            ctx.progress(off + i);
            next += PROGRESS_STEP;
        }
        true
    })
    .is_some()
}

/// Index of the first `\n` in `s`, a word at a time.
fn memchr_nl(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut i = 0;
    while i + 8 <= s.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        let x = u64::from_le_bytes(w) ^ NL;
        if x.wrapping_sub(LO) & !x & HI != 0 {
            break;
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b == b'\n').map(|j| i + j)
}

/// Offset of the first `\n` at or after `from`, reporting progress over long searches.
fn find_newline(ctx: &mut Ctx, data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < data.len() {
        let j = (i + PROGRESS_STEP).min(data.len());
        if let Some(k) = memchr_nl(&data[i..j]) {
            if k > 1 << 16 {
                ctx.progress(i + k);
            }
            return Some(i + k);
        }
        i = j;
        ctx.progress(i);
    }
    None
}

/// The text of a short str literal (raw payload at most 512 bytes) as UTF-8 bytes.
fn short_text(data: &[u8], v: &Val) -> Option<Vec<u8>> {
    let (kind, _, off, len) = v.lit()?;
    if !kind.is_str() || len > 512 {
        return None;
    }
    let raw = &data[off..off + len];
    Some(match kind {
        SKind::Utf8 | SKind::LegacyUtf8 => raw.to_vec(),
        SKind::LegacyLatin1 => decode_latin1(raw, usize::MAX).0.bytes,
        SKind::EscapedUtf8 => escape_decode(raw)?,
        SKind::EscapedLatin1 => decode_latin1(&escape_decode(raw)?, usize::MAX).0.bytes,
        SKind::RawUnicodeEscape => raw_unicode_escape_decode(raw, usize::MAX)?.0.bytes,
        SKind::Bytes | SKind::Bytearray => return None,
    })
}

// ---------------------------------------------------------------------------------------
// File input
// ---------------------------------------------------------------------------------------

/// Analyze `length` bytes (the rest of the file if `None`) of the file at `path`, starting at
/// `offset`: the same facts as [`analyze_with`] on those bytes (offsets relative to
/// `offset`). On Linux and macOS the file is mapped read-only and private, and the pages
/// behind the parser are released as it advances, so memory does not grow with the file
/// (pages read again later are simply read again). Elsewhere the range is read into memory.
pub fn analyze_file(
    path: &std::path::Path,
    offset: u64,
    length: Option<u64>,
    limits: &Limits,
    opts: &Options,
) -> std::io::Result<Facts> {
    use std::io::{Error, ErrorKind, Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let length = match length {
        Some(l) => l,
        None => size.checked_sub(offset).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "offset is beyond the end of the file",
            )
        })?,
    };
    let end = offset
        .checked_add(length)
        .filter(|&e| e <= size)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "range is beyond the end of the file",
            )
        })?;
    let length = usize::try_from(length)
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "range too large"))?;
    if length == 0 {
        return Ok(analyze_with(&[], limits, opts, None));
    }
    #[cfg(all(
        target_pointer_width = "64",
        any(target_os = "linux", target_os = "android", target_os = "macos")
    ))]
    {
        if let Ok(map) = mapped::Map::new(&file, end as usize) {
            let base = offset as usize;
            let bytes = &map.bytes()[base..base + length];
            let mut release = |pos: usize| map.release(base + pos);
            return Ok(analyze_with(bytes, limits, opts, Some(&mut release)));
        }
    }
    let _ = end;
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.take(length as u64).read_to_end(&mut buf)?;
    if buf.len() != length {
        return Err(Error::new(
            ErrorKind::UnexpectedEof,
            "the file shrank while being read",
        ));
    }
    Ok(analyze_with(&buf, limits, opts, None))
}

#[cfg(all(
    target_pointer_width = "64",
    any(target_os = "linux", target_os = "android", target_os = "macos")
))]
mod mapped {
    use std::cell::Cell;
    use std::os::raw::{c_int, c_void};
    use std::os::unix::io::AsRawFd;

    extern "C" {
        fn mmap(
            addr: *mut c_void,
            len: usize,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            offset: i64,
        ) -> *mut c_void;
        fn munmap(addr: *mut c_void, len: usize) -> c_int;
        fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
    }

    // Same values on Linux and macOS.
    const PROT_READ: c_int = 1;
    const MAP_PRIVATE: c_int = 2;
    const MADV_DONTNEED: c_int = 4;
    /// Release granularity: a multiple of every page size in use (4, 16 and 64 KiB).
    const ALIGN: usize = 64 << 10;

    /// A private read-only mapping of the first `len` bytes of a file.
    pub struct Map {
        ptr: *mut u8,
        len: usize,
        released: Cell<usize>,
    }

    impl Map {
        pub fn new(file: &std::fs::File, len: usize) -> std::io::Result<Map> {
            // SAFETY: a fresh mapping chosen by the kernel; checked for MAP_FAILED below.
            let ptr = unsafe {
                mmap(
                    std::ptr::null_mut(),
                    len,
                    PROT_READ,
                    MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
            };
            if ptr as isize == -1 || ptr.is_null() {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Map {
                ptr: ptr as *mut u8,
                len,
                released: Cell::new(0),
            })
        }

        pub fn bytes(&self) -> &[u8] {
            // SAFETY: `len` readable bytes at `ptr` until munmap in Drop. The file may change
            // underneath (as with Python's mmap): contents may then be inconsistent, and a
            // file truncated by another process makes later reads fault.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }

        /// Drop the pages before `upto` from this process (they are read again from the file
        /// if needed: the mapping is private and never written).
        pub fn release(&self, upto: usize) {
            let upto = upto.min(self.len) / ALIGN * ALIGN;
            let from = self.released.get();
            if upto > from {
                // SAFETY: [from, upto) lies inside the mapping and is page aligned.
                unsafe {
                    madvise(
                        self.ptr.add(from) as *mut c_void,
                        upto - from,
                        MADV_DONTNEED,
                    );
                }
                self.released.set(upto);
            }
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: the mapping created in `new`, unmapped once.
            unsafe {
                munmap(self.ptr as *mut c_void, self.len);
            }
        }
    }
}
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

    fn compact(data: &[u8], limits: &Limits) -> Facts {
        let opts = Options {
            compact: true,
            ..Options::default()
        };
        analyze_with(data, limits, &opts, None)
    }

    #[test]
    fn compact_groups_identical_imports() {
        // m.A(), m.A(), m.B, m.A, then STACK_GLOBAL m.A (another opcode: its own group)
        let d = b"\x80\x04cm\nA\n)R0cm\nA\n)R0cm\nB\n0cm\nA\n0\x8c\x01m\x8c\x01A\x930N.";
        let normal = run(d);
        assert_eq!(normal.pickles[0].status, Status::Stop);
        assert_eq!(normal.globals.len(), 5);
        let targets: Vec<Option<usize>> = normal.calls.iter().map(|c| c.target).collect();
        assert_eq!(targets, vec![Some(0), Some(1)]);
        let f = compact(d, &Limits::default());
        let globals: Vec<(usize, &[u8], u8, u64)> = f
            .globals
            .iter()
            .map(|g| {
                (
                    g.offset,
                    g.name.as_ref().unwrap().as_bytes(),
                    g.opcode,
                    g.count,
                )
            })
            .collect();
        let glob = |n: usize| (0..d.len()).filter(|&i| d[i] == b'c').nth(n).unwrap();
        assert_eq!(
            globals,
            vec![
                (glob(0), &b"A"[..], op::GLOBAL, 3),
                (glob(2), &b"B"[..], op::GLOBAL, 1),
                (d.len() - 4, &b"A"[..], op::STACK_GLOBAL, 1)
            ]
        );
        // both calls of m.A target its group, so they are one call group
        let calls: Vec<(Option<usize>, u64)> =
            f.calls.iter().map(|c| (c.target, c.count)).collect();
        assert_eq!(calls, vec![(Some(0), 2)]);
        assert!(normal.globals.iter().all(|g| g.count == 1));
    }

    #[test]
    fn compact_groups_calls_and_persistent_ids() {
        // A(), B("x"), A(), A("x"), B(), A(), None(); BINPERSID x2, PERSID
        let d = b"\x80\x02cm\nA\nq\x00cm\nB\nq\x01h\x00)R0h\x01X\x01\x00\x00\x00x\x85R0h\x00)R0\
                  h\x00X\x01\x00\x00\x00x\x85R0h\x01)R0h\x00)R0N)R0QQ0Pp\n0N.";
        let r: Vec<usize> = (0..d.len()).filter(|&i| d[i] == b'R').collect();
        let normal = run(d);
        assert_eq!(normal.pickles[0].status, Status::Stop);
        assert_eq!(normal.calls.len(), 7);
        assert!(normal.calls.iter().all(|c| c.count == 1));
        assert!(normal.persistent_ids.iter().all(|p| p.count == 1));
        let f = compact(d, &Limits::default());
        let calls: Vec<(usize, Option<usize>, usize, u64)> = f
            .calls
            .iter()
            .map(|c| (c.offset, c.target, c.args.len(), c.count))
            .collect();
        // one group per (opcode, target), with its first call's offset and arguments
        assert_eq!(
            calls,
            vec![
                (r[0], Some(0), 0, 4),
                (r[1], Some(1), 1, 2),
                (r[6], None, 0, 1)
            ]
        );
        let pids: Vec<(u8, u64)> = f
            .persistent_ids
            .iter()
            .map(|p| (p.opcode, p.count))
            .collect();
        assert_eq!(pids, vec![(op::BINPERSID, 2), (op::PERSID, 1)]);
        // nothing else changes (these imports are all distinct)
        assert_eq!(f.pickles, normal.pickles);
        assert_eq!(f.globals, normal.globals);
        assert_eq!(f.opcode_counts, normal.opcode_counts);

        // a group is one fact for max_facts: 50 grouped calls pass a limit of 10 that stops the
        // normal mode at the 11th
        let mut d = vec![op::NONE];
        for _ in 0..50 {
            d.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
        }
        d.push(op::STOP);
        let lim = Limits {
            max_facts: 10,
            ..Limits::default()
        };
        let (n, c) = (analyze(&d, &lim), compact(&d, &lim));
        assert_eq!((n.limit, n.calls.len()), (Some(LimitKind::Facts), 11));
        assert_eq!((c.limit, c.calls.len(), c.calls[0].count), (None, 1, 50));

        // groups are per pickle: the second pickle's calls are not added to the first's
        let one: &[u8] = b"N)R0NQ0N.";
        let f = compact(&[one, one].concat(), &Limits::default());
        let groups: Vec<(usize, u64)> = f.calls.iter().map(|c| (c.pickle, c.count)).collect();
        assert_eq!(groups, vec![(0, 1), (1, 1)]);
        assert_eq!(f.persistent_ids.len(), 2);
    }

    #[test]
    fn working_buffers_do_not_leak_between_analyses() {
        // memo key 5 stored by one analysis is missing in the next (buffers are reused)
        let mut big = vec![op::PROTO, 4];
        for _ in 0..3000 {
            big.extend_from_slice(&[op::NONE, op::MEMOIZE]);
        }
        big.push(op::STOP);
        assert_eq!(run(&big).pickles[0].status, Status::Stop);
        let f = run(&[op::PROTO, 4, op::BINGET, 5, op::STOP]);
        assert_eq!(f.pickles[0].error, Some(ErrorCode::MemoMissing));
        assert_eq!(run(&big), run(&big));
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

        // past max_memo values are dropped, not a limit (see memo_budget); far keys are bounded
        let mut d = vec![op::NONE];
        for i in 0..=MAX_FAR_DROPPED as u32 {
            d.push(op::LONG_BINPUT);
            d.extend((0x8000_0000 + i).to_le_bytes());
        }
        d.push(op::STOP);
        let f = analyze(&d, &lim(|l| l.max_memo = 0));
        assert_eq!(f.limit, Some(LimitKind::Memo));
        assert_eq!(f.pickles[0].error_offset, Some(1 + 5 * MAX_FAR_DROPPED));

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

    fn kinds(p: &PickleInfo) -> Vec<(usize, &'static str)> {
        p.frame_violations
            .iter()
            .map(|v| (v.offset, v.kind.as_str()))
            .collect()
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = vec![op::FRAME];
        v.extend((body.len() as u64).to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_are_transparent_but_checked() {
        let mut d = vec![op::PROTO, 4, op::FRAME];
        d.extend(3u64.to_le_bytes());
        d.extend([op::NONE, op::STOP]);
        // frame says 3 bytes but only 2 remain: the pure-Python unpickler goes on
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop);
        assert_eq!(kinds(&f.pickles[0]), vec![(2, "frame-beyond-data")]);
        assert_eq!(f.pickles[0].frame_end, None);
        d.push(0x05);
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop);
        // the frame covers STOP and one more byte
        assert_eq!(f.pickles[0].end, Some(d.len() - 1));
        assert_eq!(f.pickles[0].frame_end, Some(d.len()));
        assert_eq!(kinds(&f.pickles[0]), vec![(2, "frame-past-stop")]);
        assert_eq!(
            f.trailing,
            Some(Trailing {
                offset: d.len() - 1,
                length: 1
            })
        );
        // a length above 2**63-1 is an error in every unpickler
        let mut d = vec![op::PROTO, 4, op::FRAME];
        d.extend((1u64 << 63).to_le_bytes());
        assert_eq!(run(&d).pickles[0].error, Some(ErrorCode::BadArgument));
    }

    #[test]
    fn frame_violations() {
        // an argument crossing the frame end
        let mut d = vec![op::PROTO, 4];
        d.extend(frame(&[op::SHORT_BINUNICODE, 5, b'a', b'b']));
        d.extend(b"cde.");
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop);
        assert_eq!(kinds(&f.pickles[0]), vec![(11, "crosses-frame-end")]);
        // the length byte at the end of the frame, the payload after it: fine
        let mut d = vec![op::PROTO, 4];
        d.extend(frame(&[op::SHORT_BINUNICODE, 5]));
        d.extend(b"abcde.");
        assert!(kinds(&run(&d).pickles[0]).is_empty());
        // a text line crossing the frame end
        let mut d = vec![op::PROTO, 4];
        d.extend(frame(b"Vab"));
        d.extend(b"c\n.");
        let f = run(&d);
        assert_eq!(kinds(&f.pickles[0]), vec![(11, "crosses-frame-end")]);
        // a frame inside a frame, and one exactly at the end of a frame
        let mut inner = vec![op::NONE, op::POP];
        inner.extend(frame(&[op::NONE, op::STOP]));
        let mut d = vec![op::PROTO, 4];
        d.extend(frame(&inner));
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop);
        assert_eq!(kinds(&f.pickles[0]), vec![(13, "frame-in-frame")]);
        let mut d = vec![op::PROTO, 4];
        d.extend(frame(&[
            op::NONE,
            op::POP,
            op::FRAME,
            2,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ]));
        d.extend([op::NONE, op::STOP]);
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop);
        assert!(kinds(&f.pickles[0]).is_empty());
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
        m.put(5000, &Val::Global(7), usize::MAX); // far beyond the entries: sparse
        m.put(u32::MAX as u64, &Val::Global(8), usize::MAX);
        assert!(m.dense.len() < 5000);
        for k in 0..4500u64 {
            m.put(k, &Val::Other, usize::MAX);
        }
        assert!(m.dense.len() > 5000, "dense grew over the sparse key");
        assert!(matches!(m.get(5000), Some(Val::Global(7))));
        assert!(matches!(m.get(u32::MAX as u64), Some(Val::Global(8))));
        assert_eq!(m.len(), 4502);
        m.put(5000, &Val::Other, usize::MAX); // overwrite: no new entry
        m.put(0, &Val::Other, usize::MAX);
        assert_eq!(m.len(), 4502);
        assert!(m.get(4999).is_none());
        assert!(m.dense.len() <= 4 * m.len() + 2048);
        // A hostile key does not allocate by its value.
        let mut m = Memo::default();
        m.put(1 << 40, &Val::Other, usize::MAX);
        assert!(m.dense.is_empty());
    }

    #[test]
    fn memo_budget() {
        let budget = |max_memo| Limits {
            max_memo,
            ..Limits::default()
        };
        // max_memo 2: keys 0 and 1 keep their values; key 2 (None) is dropped, yet MEMOIZE
        // keys stay CPython's; a global past the budget is kept; a GET of a dropped key is
        // unknown, of a key never PUT an error
        let mut d = vec![op::PROTO, 4, op::NONE, op::MEMOIZE, op::MEMOIZE]; // keys 0, 1
        d.extend([op::BINPUT, 0]); // overwrite a kept key
        d.extend([op::MEMOIZE, op::POP]); // key 2: dropped
        d.extend(b"cos\nsystem\n"); // a global...
        d.extend([op::MEMOIZE, op::POP]); // ...key 3: kept past the budget
        d.extend([op::BINGET, 3, op::BINGET, 2, op::TUPLE1, op::REDUCE]);
        d.extend([op::BINGET, 2, op::BINPUT, 2, op::MEMOIZE]); // a dropped key again; key 4
        d.extend([op::BINGET, 9, op::STOP]);
        let f = analyze(&d, &budget(2));
        let p = &f.pickles[0];
        assert_eq!(f.limit, None);
        assert_eq!(
            (p.status, p.error),
            (Status::Error, Some(ErrorCode::MemoMissing))
        );
        assert_eq!(p.error_offset, Some(d.len() - 3));
        assert_eq!(p.memo_dropped, 3);
        assert_eq!(f.calls.len(), 1);
        assert_eq!(
            f.calls[0].target,
            Some(0),
            "the call through the kept global is linked"
        );
        let mut d2 = d.clone();
        let n = d2.len();
        d2[n - 2] = 4; // GET 4: the MEMOIZE after the dropped key 2 used key 4, as CPython
        let f = analyze(&d2, &budget(2));
        assert_eq!(f.pickles[0].status, Status::Stop);
        // without a budget nothing is dropped
        let f = analyze(&d2, &budget(100));
        assert_eq!(f.pickles[0].memo_dropped, 0);
    }

    #[test]
    fn memo_slots_keep_every_value() {
        let mut m = Memo::default();
        let vals = [
            Val::Other,
            Val::Unknown,
            Val::None,
            Val::Bool(false),
            Val::Bool(true),
            Val::Int(0),
            Val::Int(TRACKED_INT - 1),
            Val::Int(-TRACKED_INT),
            Val::Int(-1),
            Val::span(SKind::Utf8, 3, 5),
            Val::span(SKind::Bytearray, (1 << 40) - 1, (1 << 17) - 1),
            Val::span(SKind::EscapedLatin1, 1 << 40, 2), // too far: offset only, length aside
            Val::span(SKind::Bytes, 7, 1 << 17),         // too long
            Val::span(SKind::Bytes, 9, 1 << 33),
            Val::span(SKind::Bytes, 9, 1 << 33), // the same literal again: no second aside entry
            Val::Global(u32::MAX - 1),
            Val::Result {
                target: NO_GLOBAL,
                obj: NO_OBJ,
            },
            Val::Result {
                target: 5,
                obj: MAYBE_OBJ,
            },
            Val::Result {
                target: 0,
                obj: MAX_OBJS as u32 - 1,
            },
            Val::Dict((1 << 60) - 1),
            Val::EmptyTuple,
            Val::Tuple(u32::MAX),
        ];
        for (k, v) in vals.iter().enumerate() {
            m.insert(k as u64, v);
        }
        for (k, v) in vals.iter().enumerate() {
            assert_eq!(format!("{:?}", m.get(k as u64).unwrap()), format!("{v:?}"));
        }
        assert_eq!(
            m.long.len(),
            3,
            "one aside length per distinct long literal"
        );
        assert_eq!(std::mem::size_of::<Slot>(), 8);
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
    fn values_are_small() {
        assert_eq!(std::mem::size_of::<Val>(), 16);
        assert_eq!(std::mem::size_of::<Option<Val>>(), 16);
    }

    #[test]
    fn literal_arguments() {
        // exec("print(1)", b"\x00", bytearray) via REDUCE; a str from the memo; OBJ args
        let mut d = b"\x80\x05cbuiltins\nexec\n(".to_vec();
        d.extend(su("print(1)"));
        d.push(op::MEMOIZE);
        d.extend([op::SHORT_BINBYTES, 1, 0]);
        d.push(op::BYTEARRAY8);
        d.extend(2u64.to_le_bytes());
        d.extend(b"ba");
        d.extend([op::NONE, op::TUPLE, op::REDUCE, op::POP]);
        d.extend(b"(cbuiltins\neval\nh\x00K\x01o.");
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        let lit = |a: &ArgFact| match a.value {
            ArgValue::Literal {
                kind,
                offset,
                length,
            } => (kind, offset, length),
            ArgValue::Global(_) => panic!("not a literal: {a:?}"),
        };
        let a: Vec<(usize, &str, &[u8])> = f.calls[0]
            .args
            .iter()
            .map(|a| {
                let (kind, offset, length) = lit(a);
                (a.index, kind.as_str(), &d[offset..offset + length])
            })
            .collect();
        assert_eq!(
            a,
            vec![
                (0, "str", &b"print(1)"[..]),
                (1, "bytes", &b"\x00"[..]),
                (2, "bytearray", &b"ba"[..])
            ]
        );
        assert_eq!(f.calls[1].opcode, op::OBJ);
        assert_eq!(f.calls[1].args.len(), 1);
        assert_eq!(lit(&f.calls[1].args[0]).1, lit(&f.calls[0].args[0]).1);
        // at most MAX_ARGS per call
        let mut d = b"cbuiltins\nprint\n(".to_vec();
        for _ in 0..20 {
            d.extend(su("x"));
        }
        d.extend(b"tR.");
        assert_eq!(run(&d).calls[0].args.len(), MAX_ARGS);
    }

    fn arg_values(c: &CallFact) -> Vec<(usize, ArgValue)> {
        c.args.iter().map(|a| (a.index, a.value)).collect()
    }

    #[test]
    fn global_arguments() {
        // getattr(zoneinfo.ZoneInfo, "_unpickle"), as CPython pickles a bound classmethod
        // (protocol 2), then the method called with ("Europe/Paris", 1)
        let mut d = b"\x80\x02c__builtin__\ngetattr\nq\x00czoneinfo\nZoneInfo\nq\x01".to_vec();
        d.extend(b"X\x09\x00\x00\x00_unpickleq\x02\x86q\x03Rq\x04");
        d.extend(b"X\x0c\x00\x00\x00Europe/Parisq\x05K\x01\x86q\x06Rq\x07.");
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        assert_eq!(f.calls[0].target, Some(0));
        assert_eq!(
            f.calls[0].args[0],
            ArgFact {
                index: 0,
                value: ArgValue::Global(1)
            }
        );
        assert_eq!(f.calls[0].args[0].kind_str(), "global");
        assert!(matches!(
            f.calls[0].args[1].value,
            ArgValue::Literal {
                kind: ArgKind::Str,
                ..
            }
        ));
        assert_eq!(f.calls[0].args.len(), 2);
        // "Europe/Paris"; the int is not reported
        assert_eq!(f.calls[1].args.len(), 1);
        // globals fetched from the memo (BINGET, GET, LONG_BINGET), from GLOBAL and
        // STACK_GLOBAL: partial(len, partial, (len,), partial(len), 1); a global inside a
        // nested tuple, a call result and an int are not reported
        let mut d = b"\x80\x04cfunctools\npartial\nq\x070".to_vec(); // global 0, memo 7
        d.extend(su("builtins"));
        d.extend(su("len"));
        d.extend(b"\x93\x940"); // global 1, memo 1
        d.extend(b"h\x07(g1\nj\x07\x00\x00\x00h\x01\x85h\x07h\x01\x85RK\x01tR.");
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        assert_eq!(f.calls.len(), 2);
        assert!(f.calls.iter().all(|c| c.target == Some(0)));
        assert_eq!(arg_values(&f.calls[0]), vec![(0, ArgValue::Global(1))]);
        assert_eq!(
            arg_values(&f.calls[1]),
            vec![(0, ArgValue::Global(1)), (1, ArgValue::Global(0))]
        );
        // the cap counts globals and literals together
        let mut d = b"cbuiltins\nprint\n(".to_vec();
        for i in 0..20 {
            d.extend(if i % 2 == 0 {
                su("x")
            } else {
                b"cos\nsep\n".to_vec()
            });
        }
        d.extend(b"tR.");
        let f = run(&d);
        assert_eq!(f.calls[0].args.len(), MAX_ARGS);
        assert_eq!(f.calls[0].args[7].index, 7);
        assert_eq!(f.calls[0].args[7].value, ArgValue::Global(4));
        // OBJ, INST, NEWOBJ, BUILD and a global container's SETITEM report globals as well
        let d = [
            &b"(cos\nsystem\ncos\nsep\no0"[..],
            b"(cos\nsep\nibuiltins\nlist\n0",
            b"cbuiltins\nobject\ncos\nsep\n\x85\x81",
            b"cos\nsep\nb0",
            b"cos\nenviron\ncos\nsep\nNs.",
        ]
        .concat();
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        let got: Vec<_> = f.calls.iter().map(|c| (c.opcode, arg_values(c))).collect();
        assert_eq!(
            got,
            vec![
                (op::OBJ, vec![(0, ArgValue::Global(1))]),
                (op::INST, vec![(0, ArgValue::Global(2))]),
                (op::NEWOBJ, vec![(0, ArgValue::Global(5))]),
                (op::BUILD, vec![(0, ArgValue::Global(6))]),
                (op::SETITEM, vec![(0, ArgValue::Global(8))]),
            ]
        );
    }

    /// A joblib NumpyArrayWrapper BUILD of a 2x3 float64 array, then `tail` after the data.
    fn joblib_stream(align: bool, data: &[u8], tail: &[u8]) -> Vec<u8> {
        joblib_stream_shape(
            &[op::BININT1, 2, op::BININT1, 3, op::TUPLE2],
            align,
            data,
            tail,
        )
    }

    fn joblib_stream_shape(shape: &[u8], align: bool, data: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut d = vec![op::PROTO, 4];
        d.extend(su("joblib.numpy_pickle"));
        d.extend(su("NumpyArrayWrapper"));
        d.extend([
            op::STACK_GLOBAL,
            op::EMPTY_TUPLE,
            op::NEWOBJ,
            op::EMPTY_DICT,
            op::MARK,
        ]);
        d.extend(su("shape"));
        d.extend_from_slice(shape);
        d.extend(su("dtype"));
        d.extend(su("numpy"));
        d.extend(su("dtype"));
        d.push(op::STACK_GLOBAL);
        d.extend(su("f8"));
        d.extend([
            op::NEWFALSE,
            op::NEWTRUE,
            op::TUPLE3,
            op::REDUCE,
            op::MARK,
            op::BININT1,
            3,
        ]);
        d.extend(su("<"));
        d.extend([
            op::NONE,
            op::NONE,
            op::NONE,
            op::BININT1,
            0xff,
            op::BININT1,
            0xff,
        ]);
        d.extend([op::BININT1, 0, op::TUPLE, op::BUILD]);
        if align {
            d.extend(su("numpy_array_alignment_bytes"));
            d.extend([op::BININT1, 16]);
        }
        d.extend([op::SETITEMS, op::BUILD]);
        d.extend_from_slice(data);
        d.extend_from_slice(tail);
        d
    }

    #[test]
    fn joblib_array_data_is_skipped() {
        let payload = [7u8; 48];
        let mut data = vec![2u8, 0xff, 0xff];
        data.extend(payload);
        let d = joblib_stream(true, &data, &[op::STOP]);
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop, "{:?}", f.pickles[0]);
        assert_eq!(f.pickles[0].end, Some(d.len()));
        let s = f.raw_spans[0];
        assert_eq!((s.offset, s.length, s.padding), (d.len() - 52, 51, 3));
        // without the alignment attribute there is no padding byte
        let d = joblib_stream(false, &payload, &[op::STOP]);
        let f = run(&d);
        assert_eq!(f.pickles[0].status, Status::Stop);
        assert_eq!(f.raw_spans[0].padding, 0);
        // the same bytes read as pickle.load reads them: opcodes
        let f = analyze_with(
            &d,
            &Limits::default(),
            &Options {
                follow_joblib: false,
                ..Options::default()
            },
            None,
        );
        assert!(f.raw_spans.is_empty());
        assert_eq!(f.pickles[0].error, Some(ErrorCode::InvalidOpcode));
        // data cut short
        let d = joblib_stream(true, &data[..20], &[]);
        assert_eq!(run(&d).pickles[0].error, Some(ErrorCode::Truncated));
        // an unknown shape: no guess
        let bad = joblib_stream_shape(
            &[op::BININT1, 2, op::NONE, op::TUPLE2],
            true,
            &data,
            &[op::STOP],
        );
        let f = run(&bad);
        assert_eq!(f.pickles[0].error, Some(ErrorCode::JoblibArrayUnknown));
    }

    #[test]
    fn analyze_file_matches_analyze_and_releases() {
        let d = joblib_stream(true, &[0u8; 49], &[op::STOP]);
        let mut file = b"head".to_vec();
        file.extend(&d);
        file.extend(b"tail");
        let path = std::env::temp_dir().join(format!("mlguard-pickle-{}.bin", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let lim = Limits::default();
        let opts = Options::default();
        let f = analyze_file(&path, 4, Some(d.len() as u64), &lim, &opts).unwrap();
        assert_eq!(f, analyze(&d, &lim));
        let f = analyze_file(&path, 0, None, &lim, &opts).unwrap();
        assert_eq!(f, analyze(&file, &lim));
        assert!(analyze_file(&path, file.len() as u64 + 1, None, &lim, &opts).is_err());
        assert!(analyze_file(&path, 1, Some(file.len() as u64), &lim, &opts).is_err());
        std::fs::remove_file(&path).unwrap();
        // the progress hook sees increasing offsets on long inputs
        let mut big = vec![op::PROTO, 4];
        big.extend(std::iter::repeat_n([op::NONE, op::POP], 12 << 20).flatten());
        big.extend([op::NONE, op::STOP]);
        let mut seen = Vec::new();
        let mut hook = |p: usize| seen.push(p);
        let many = Limits {
            max_opcodes: u64::MAX,
            ..lim
        };
        let f = analyze_with(&big, &many, &opts, Some(&mut hook));
        assert_eq!(f.pickles[0].status, Status::Stop);
        assert!(!seen.is_empty() && seen.windows(2).all(|w| w[0] < w[1]));
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
