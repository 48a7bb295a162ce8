//! Zip kernel: the structure of a zip archive as its readers see it, without decompressing.
//!
//! [`analyze`] finds the end-of-central-directory record (and the zip64 one), walks the central
//! directory, and reads the local header in front of every member's data. It reports facts only:
//! where each member's data starts, what the central directory and the local header each claim
//! (name, method, flags, CRC, sizes) and where they disagree, duplicate names, overlapping members,
//! bytes no member accounts for (with any local headers hidden there), bytes before the archive
//! and after its end record. Deciding what is suspicious is the Python policy's job.
//!
//! The pure-Python twin `mlguard/engine/pure/zip.py` implements the same rules and must return
//! identical facts; `tests/test_engine_zip.py` checks both against each other.
//!
//! Hostile input: every declared offset and length is checked against the data before use
//! (arithmetic in `i128`, so no declared value can overflow), nothing is allocated by a declared
//! size, and the work is bounded by `max_members` entries and `max_name_bytes` bytes of names.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::quality::RandomState;

pub const SIG_LOCAL: &[u8; 4] = b"PK\x03\x04";
pub const SIG_CENTRAL: &[u8; 4] = b"PK\x01\x02";
pub const SIG_EOCD: &[u8; 4] = b"PK\x05\x06";
pub const SIG_ZIP64_LOCATOR: &[u8; 4] = b"PK\x06\x07";
pub const SIG_ZIP64_EOCD: &[u8; 4] = b"PK\x06\x06";
pub const SIG_DESCRIPTOR: &[u8; 4] = b"PK\x07\x08";

const EOCD_SIZE: usize = 22;
const MAX_COMMENT: usize = 0xFFFF;
/// Raw bytes of each member's data returned as `head`.
pub const HEAD_BYTES: i128 = 16;
/// Bytes after a skimmed member's minimal span that may hold its local name, extra field and
/// data descriptor (never read): unaccounted bytes up to this size after one are not a gap.
pub const SKIM_SLACK: i128 = 2 * 0xFFFF + 24;
pub const FLAG_ENCRYPTED: u16 = 0x0001;
pub const FLAG_DESCRIPTOR: u16 = 0x0008;
pub const FLAG_UTF8: u16 = 0x0800;
const U32MAX: u64 = 0xFFFF_FFFF;

/// Bounds on the work done for one input.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Central-directory entries plus local-only entries, at most.
    pub max_members: u64,
    /// Bytes of member names read, summed.
    pub max_name_bytes: u64,
}

/// What to read besides the directory.
#[derive(Clone, Copy, Debug)]
pub struct Options<'s> {
    /// Read each member's local header (and descriptor, head; look for gaps and hidden headers).
    pub local_headers: bool,
    /// Skim ordinary stored members of directories whose last component is this name ...
    pub skim_dir: Option<&'s str>,
    /// ... when the directory holds at least this many members (0: never skim).
    pub skim_min: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Eocd {
    pub offset: u64,
    pub disk: u16,
    pub cd_disk: u16,
    pub entries_disk: u16,
    pub entries: u16,
    pub cd_size: u32,
    pub cd_offset: u32,
    pub comment_length: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Zip64 {
    pub locator_offset: u64,
    pub declared_offset: u64,
    pub offset: Option<u64>,
    pub entries: Option<u64>,
    pub cd_size: Option<u64>,
    pub cd_offset: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Local {
    pub name: String,
    pub flags: u16,
    pub method: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub extra_length: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Descriptor {
    pub crc32: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub signature: bool,
}

#[derive(Clone, Debug)]
pub struct Member<'a> {
    pub index: u64,
    pub central: bool,
    raw: &'a [u8],
    pub name: Cow<'a, str>,
    pub header_offset: i128,
    pub method: u16,
    pub flags: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub local: Option<Local>,
    pub data_offset: Option<u64>,
    pub descriptor: Option<Descriptor>,
    pub mismatch: Vec<&'static str>,
    pub duplicate: Option<&'static str>,
    pub overlap: bool,
    pub head: Option<&'a [u8]>,
    pub errors: Vec<&'static str>,
    span_end: Option<i128>,
}

impl<'a> Member<'a> {
    pub fn encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }

    fn blank(index: u64, central: bool, offset: i128) -> Self {
        Member {
            index,
            central,
            raw: &[],
            name: Cow::Borrowed(""),
            header_offset: offset,
            method: 0,
            flags: 0,
            crc32: 0,
            compressed_size: 0,
            uncompressed_size: 0,
            local: None,
            data_offset: None,
            descriptor: None,
            mismatch: Vec::new(),
            duplicate: None,
            overlap: false,
            head: None,
            errors: Vec::new(),
            span_end: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Skimmed {
    pub dir: String,
    pub members: u64,
    pub compressed_size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gap {
    pub offset: u64,
    pub length: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZipError {
    pub code: &'static str,
    pub offset: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub size: u64,
    pub eocd: Option<Eocd>,
    pub zip64: Option<Zip64>,
    pub cd_start: Option<u64>,
    pub shift: i128,
    pub start: Option<u64>,
    pub trailing: u64,
    pub entries_declared: Option<u64>,
    pub entries_found: u64,
    /// Central members that were not skimmed (directory order), then local-only members.
    pub members: Vec<Member<'a>>,
    pub skimmed: Vec<Skimmed>,
    pub gaps: Vec<Gap>,
    pub errors: Vec<ZipError>,
    pub limit: Option<&'static str>,
}

// ------------------------------------------------------------------------------------- helpers

// (one bounds check each, by the slice; callers check the record fits first)
fn u16_at(d: &[u8], p: usize) -> u16 {
    u16::from_le_bytes(d[p..p + 2].try_into().unwrap_or_default())
}

fn u32_at(d: &[u8], p: usize) -> u32 {
    u32::from_le_bytes(d[p..p + 4].try_into().unwrap_or_default())
}

fn u64_at(d: &[u8], p: usize) -> u64 {
    u64::from_le_bytes(d[p..p + 8].try_into().unwrap_or_default())
}

/// `sig` at `off` (any integer), false when it does not fit in `d`.
fn sig_at(d: &[u8], off: i128, sig: &[u8; 4]) -> bool {
    off >= 0 && off + 4 <= d.len() as i128 && &d[off as usize..off as usize + 4] == sig
}

/// `d[a..b]` clamped to the data (Python slice semantics for `0 <= a`).
fn slice(d: &[u8], a: i128, b: i128) -> &[u8] {
    let n = d.len() as i128;
    let a = a.clamp(0, n) as usize;
    let b = b.clamp(0, n) as usize;
    if b <= a {
        &[]
    } else {
        &d[a..b]
    }
}

/// Python's `cp437` codec for bytes 0x80..=0xFF (0x00..=0x7F are ASCII).
const CP437_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', 'É', 'æ', 'Æ',
    'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', 'á', 'í', 'ó', 'ú', 'ñ', 'Ñ',
    'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»', '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕',
    '╣', '║', '╗', '╝', '╜', '╛', '┐', '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦',
    '╠', '═', '╬', '╧', '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐',
    '▀', 'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', '≡', '±',
    '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u{a0}',
];

/// UTF-8 when flag bit 11 says so and the bytes are valid UTF-8, else cp437 (as zipfile).
/// The flag is false when bit 11 is set but the bytes are not UTF-8.
pub fn decode_name(raw: &[u8], flags: u16) -> (Cow<'_, str>, bool) {
    let mut ok = true;
    if flags & FLAG_UTF8 != 0 {
        match std::str::from_utf8(raw) {
            Ok(s) => return (Cow::Borrowed(s), true),
            Err(_) => ok = false,
        }
    }
    if raw.is_ascii() {
        // ASCII is valid UTF-8 and cp437 maps it to itself
        return (Cow::Borrowed(std::str::from_utf8(raw).unwrap_or("")), ok);
    }
    let s = raw.iter().map(|&b| if b < 0x80 { b as char } else { CP437_HIGH[(b - 0x80) as usize] }).collect();
    (Cow::Owned(s), ok)
}

/// Replace the 0xFFFFFFFF entries of `values` (in order) from the first zip64 extra record.
/// Returns whether a zip64 record was present.
fn zip64_extra(extra: &[u8], values: &mut [u64], errors: &mut Vec<&'static str>, corrupt: &'static str) -> bool {
    let n = extra.len();
    let mut i = 0usize;
    while i + 4 <= n {
        let kind = u16_at(extra, i);
        let length = u16_at(extra, i + 2) as usize;
        if i + 4 + length > n {
            errors.push(corrupt);
            return false;
        }
        if kind == 1 {
            let mut j = i + 4;
            let stop = j + length;
            for v in values.iter_mut() {
                if *v == U32MAX {
                    if j + 8 > stop {
                        errors.push("zip64-extra-bad");
                        break;
                    }
                    *v = u64_at(extra, j);
                    j += 8;
                }
            }
            return true;
        }
        i += 4 + length;
    }
    false
}

/// One central-directory entry while facts are gathered (compact: archives may hold 100k). Its
/// name is a span of the data, so that the vector can be kept between analyses (see [`Scratch`]).
struct Entry {
    name: (usize, usize),
    offset: i128,
    csize: u64,
    usize_: u64,
    crc: u32,
    flags: u16,
    method: u16,
    /// Directory errors (rare: boxed, so that an entry stays small).
    errors: Option<Box<[&'static str]>>,
    /// "exact" / "case" duplicate, as [`Member::duplicate`] has it.
    duplicate: Option<Duplicate>,
    overlap: bool,
    skimmed: bool,
}

#[derive(Clone, Copy)]
enum Duplicate {
    Exact,
    Case,
}

impl Duplicate {
    fn name(self) -> &'static str {
        match self {
            Duplicate::Exact => "exact",
            Duplicate::Case => "case",
        }
    }
}

impl Entry {
    fn raw<'a>(&self, d: &'a [u8]) -> &'a [u8] {
        &d[self.name.0..self.name.1]
    }
}

const NONE: u32 = u32::MAX;

/// Whether `raw` holds an ASCII capital letter (a fold without an early exit vectorizes).
fn has_upper(raw: &[u8]) -> bool {
    raw.iter().fold(false, |up, b| up | b.is_ascii_uppercase())
}

/// Groups of equal entry names, exactly or up to ASCII case (torch's miniz lookup ignores it).
///
/// One hash per name with foldhash under a random seed (crafted names cannot aim at
/// collisions they cannot predict; SipHash was 3x slower here), in an open-addressing table of
/// groups at most half full; names are compared only when their hashes are equal, so a
/// collision costs time, never a wrong group. Every buffer is kept in [`Scratch`].
#[derive(Default)]
struct Names {
    fold: bool,
    /// A power-of-two table of groups (NONE: empty), probed linearly from the hash.
    slots: Vec<u32>,
    /// Per group: the hash of its name, the entry whose name it is, its size.
    hashes: Vec<u64>,
    first: Vec<u32>,
    sizes: Vec<u32>,
    /// Group of each entry, in entry order.
    ids: Vec<u32>,
    /// Lowercased copy of the name being hashed (`fold`).
    low: Vec<u8>,
}

impl Names {
    /// The hash of `raw`, lowercased into `low` first when folding.
    fn hash(fold: bool, low: &mut Vec<u8>, seed: &RandomState, raw: &[u8]) -> u64 {
        if fold && has_upper(raw) {
            low.clear();
            low.extend(raw.iter().map(u8::to_ascii_lowercase));
            seed.hash_one(&low[..])
        } else {
            seed.hash_one(raw)
        }
    }

    fn same(fold: bool, a: &[u8], b: &[u8]) -> bool {
        if fold {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }

    /// The slot of `raw` (hash `h`): the one holding its group, or the empty one where it goes.
    fn probe(&self, d: &[u8], entries: &[Entry], h: u64, raw: &[u8]) -> usize {
        let mask = self.slots.len() - 1;
        let mut s = h as usize & mask;
        loop {
            let g = self.slots[s];
            if g == NONE
                || self.hashes[g as usize] == h
                    && Self::same(self.fold, entries[self.first[g as usize] as usize].raw(d), raw)
            {
                return s;
            }
            s = (s + 1) & mask;
        }
    }

    /// The group of `raw` (an entry's name or another key), or None.
    fn find(&mut self, seed: &RandomState, d: &[u8], entries: &[Entry], raw: &[u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let h = Self::hash(self.fold, &mut self.low, seed, raw);
        let g = self.slots[self.probe(d, entries, h, raw)];
        (g != NONE).then_some(g)
    }

    /// Group every entry (`ids`, `sizes`).
    fn build(&mut self, fold: bool, seed: &RandomState, d: &[u8], entries: &[Entry]) {
        self.fold = fold;
        self.slots.resize((entries.len() * 2).next_power_of_two().max(16), NONE);
        self.ids.reserve(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let raw = e.raw(d);
            let h = Self::hash(fold, &mut self.low, seed, raw);
            let s = self.probe(d, entries, h, raw);
            let mut g = self.slots[s];
            if g == NONE {
                g = self.first.len() as u32;
                self.slots[s] = g;
                self.hashes.push(h);
                self.first.push(i as u32);
                self.sizes.push(0);
            }
            self.sizes[g as usize] += 1;
            self.ids.push(g);
        }
    }

    fn duplicated(&self, i: usize) -> bool {
        self.sizes[self.ids[i] as usize] > 1
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.hashes.clear();
        self.first.clear();
        self.sizes.clear();
        self.ids.clear();
    }
}

/// The per-entry working buffers of [`analyze`], kept by each thread between two analyses: a
/// directory of thousands of members otherwise costs a page fault per 4 KiB of fresh buffers on
/// every call, about as long as the analysis itself. Handed out empty, so results never depend
/// on them; a buffer above [`SCRATCH_KEEP`] bytes is freed instead of kept.
#[derive(Default)]
struct Scratch {
    entries: Vec<Entry>,
    exact: Names,
    folded: Names,
    order: Vec<u32>,
    member_of: Vec<u32>,
}

/// Largest buffer (bytes of capacity) a thread keeps for the next analysis.
const SCRATCH_KEEP: usize = 4 << 20;

thread_local! {
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

impl Scratch {
    /// This thread's kept buffers (empty), or new ones.
    fn take() -> Scratch {
        SCRATCH.try_with(|c| c.take()).ok().flatten().map(|b| *b).unwrap_or_default()
    }

    /// Keep the buffers for the next analysis (emptied; too large ones freed).
    fn give_back(mut self) {
        fn keep<T>(v: &mut Vec<T>) {
            v.clear();
            if v.capacity().saturating_mul(std::mem::size_of::<T>()) > SCRATCH_KEEP {
                *v = Vec::new();
            }
        }
        keep(&mut self.entries);
        keep(&mut self.order);
        keep(&mut self.member_of);
        for names in [&mut self.exact, &mut self.folded] {
            names.clear();
            keep(&mut names.slots);
            keep(&mut names.hashes);
            keep(&mut names.first);
            keep(&mut names.sizes);
            keep(&mut names.ids);
            keep(&mut names.low);
        }
        let _ = SCRATCH.try_with(|c| c.set(Some(Box::new(self))));
    }
}

// ------------------------------------------------------------------------------------- analysis

/// Facts about the zip structure of `data`.
pub fn analyze<'a>(data: &'a [u8], limits: &Limits, opts: &Options) -> Facts<'a> {
    let d = data;
    let size = d.len();
    let isize_ = size as i128;
    let mut errors: Vec<ZipError> = Vec::new();
    let mut limit: Option<&'static str> = None;
    let mut name_bytes: u64 = 0;
    let mut eocd: Option<Eocd> = None;
    let mut zip64: Option<Zip64> = None;
    let mut cd_start: Option<u64> = None;
    let mut shift: i128 = 0;
    let mut trailing: u64 = 0;
    let mut declared: Option<u64> = None;
    let mut scratch = Scratch::take();
    let mut entries = std::mem::take(&mut scratch.entries);

    // ---- end of central directory: the last signature with a whole record after it
    let tail_start = size.saturating_sub(EOCD_SIZE + MAX_COMMENT);
    let mut found_eocd: Option<usize> = None;
    if size >= EOCD_SIZE {
        let mut p = size - EOCD_SIZE;
        loop {
            if &d[p..p + 4] == SIG_EOCD {
                found_eocd = Some(p);
                break;
            }
            if p == tail_start {
                break;
            }
            p -= 1;
        }
    }
    match found_eocd {
        None => errors.push(ZipError { code: "no-end-record", offset: None }),
        Some(e) => {
            let mut disk = u16_at(d, e + 4) as u64;
            let mut cd_disk = u16_at(d, e + 6) as u64;
            let n_total = u16_at(d, e + 10);
            let mut cd_size = u32_at(d, e + 12) as u64;
            let mut cd_offset = u32_at(d, e + 16) as u64;
            let comment = u16_at(d, e + 20);
            eocd = Some(Eocd {
                offset: e as u64,
                disk: disk as u16,
                cd_disk: cd_disk as u16,
                entries_disk: u16_at(d, e + 8),
                entries: n_total,
                cd_size: cd_size as u32,
                cd_offset: cd_offset as u32,
                comment_length: comment,
            });
            let end = e + EOCD_SIZE + comment as usize;
            if end > size {
                errors.push(ZipError { code: "comment-truncated", offset: Some(e as u64) });
            } else {
                trailing = (size - end) as u64;
            }
            let mut cd_end = e as i128;
            let mut n_entries = n_total as u64;
            if e >= 20 && sig_at(d, e as i128 - 20, SIG_ZIP64_LOCATOR) {
                let loc = e - 20;
                let z_declared = u64_at(d, loc + 8);
                let mut found: Option<u64> = None;
                for cand in [z_declared as i128, loc as i128 - 56] {
                    if cand >= 0 && cand + 56 <= isize_ && sig_at(d, cand, SIG_ZIP64_EOCD) {
                        found = Some(cand as u64);
                        break;
                    }
                }
                let mut z = Zip64 {
                    locator_offset: loc as u64,
                    declared_offset: z_declared,
                    offset: found,
                    entries: None,
                    cd_size: None,
                    cd_offset: None,
                };
                match found {
                    None => errors.push(ZipError { code: "zip64-record-missing", offset: Some(loc as u64) }),
                    Some(r) => {
                        let r = r as usize;
                        disk = u32_at(d, r + 16) as u64;
                        cd_disk = u32_at(d, r + 20) as u64;
                        n_entries = u64_at(d, r + 32);
                        cd_size = u64_at(d, r + 40);
                        cd_offset = u64_at(d, r + 48);
                        z.entries = Some(n_entries);
                        z.cd_size = Some(cd_size);
                        z.cd_offset = Some(cd_offset);
                        cd_end = r as i128;
                    }
                }
                zip64 = Some(z);
            }
            declared = Some(n_entries);
            if disk != 0 || cd_disk != 0 {
                errors.push(ZipError { code: "multi-disk", offset: Some(e as u64) });
            }
            let cd_size_i = cd_size as i128;
            if cd_size_i <= cd_end && (cd_size == 0 || sig_at(d, cd_end - cd_size_i, SIG_CENTRAL)) {
                cd_start = Some((cd_end - cd_size_i) as u64);
            } else if sig_at(d, cd_offset as i128, SIG_CENTRAL) {
                cd_start = Some(cd_offset);
            } else {
                errors.push(ZipError { code: "directory-not-found", offset: Some(e as u64) });
            }
            if let Some(cs) = cd_start {
                shift = cs as i128 - cd_offset as i128;
                let mut cd_stop = cs as i128 + cd_size_i;
                if cd_stop > isize_ {
                    errors.push(ZipError { code: "directory-truncated", offset: Some(cs) });
                    cd_stop = isize_;
                }
                let cd_stop = cd_stop as usize;
                let cap = ((cd_stop - cs as usize) / 46).min(limits.max_members.min(1 << 20) as usize);
                entries.reserve(cap.min(n_entries as usize));
                let mut p = cs as usize;
                while p < cd_stop {
                    if entries.len() as u64 >= limits.max_members {
                        limit = Some("members");
                        break;
                    }
                    if p + 46 > cd_stop || &d[p..p + 4] != SIG_CENTRAL {
                        errors.push(ZipError { code: "directory-corrupt", offset: Some(p as u64) });
                        break;
                    }
                    let h = &d[p..p + 46];
                    let flags = u16_at(h, 8);
                    let nlen = u16_at(h, 28) as usize;
                    let xlen = u16_at(h, 30) as usize;
                    let clen = u16_at(h, 32) as usize;
                    let stop = p + 46 + nlen + xlen + clen;
                    if stop > cd_stop {
                        errors.push(ZipError { code: "directory-corrupt", offset: Some(p as u64) });
                        break;
                    }
                    if name_bytes + nlen as u64 > limits.max_name_bytes {
                        limit = Some("names");
                        break;
                    }
                    name_bytes += nlen as u64;
                    let raw = &d[p + 46..p + 46 + nlen];
                    let mut merrs: Vec<&'static str> = Vec::new();
                    if flags & FLAG_UTF8 != 0 && !raw.is_ascii() && std::str::from_utf8(raw).is_err() {
                        merrs.push("name-not-utf8");
                    }
                    let mut values = [u32_at(h, 24) as u64, u32_at(h, 20) as u64, u32_at(h, 42) as u64];
                    if xlen > 0 {
                        zip64_extra(&d[p + 46 + nlen..p + 46 + nlen + xlen], &mut values, &mut merrs, "extra-corrupt");
                    }
                    entries.push(Entry {
                        name: (p + 46, p + 46 + nlen),
                        offset: values[2] as i128 + shift,
                        csize: values[1],
                        usize_: values[0],
                        crc: u32_at(h, 16),
                        flags,
                        method: u16_at(h, 10),
                        errors: (!merrs.is_empty()).then(|| merrs.into_boxed_slice()),
                        duplicate: None,
                        overlap: false,
                        skimmed: false,
                    });
                    p = stop;
                }
            }
        }
    }

    let bound: i128 = match cd_start {
        Some(c) => c as i128,
        None => isize_,
    };
    let n = entries.len();

    // ---- duplicates: equal raw names, or equal up to ASCII case (torch's miniz lookup ignores it)
    let seed = RandomState::default(); // a new random seed for each archive
    let (mut exact, mut folded) = (std::mem::take(&mut scratch.exact), std::mem::take(&mut scratch.folded));
    exact.build(false, &seed, d, &entries);
    let any_upper = entries.iter().any(|e| has_upper(e.raw(d)));
    if any_upper {
        folded.build(true, &seed, d, &entries);
    }
    for (i, e) in entries.iter_mut().enumerate() {
        if exact.duplicated(i) {
            e.duplicate = Some(Duplicate::Exact);
        } else if any_upper && folded.duplicated(i) {
            e.duplicate = Some(Duplicate::Case);
        }
    }

    // ---- overlaps by the minimal span (30-byte header + data): a member starting inside another
    let mut order = std::mem::take(&mut scratch.order);
    order.extend((0..n as u32).filter(|&i| entries[i as usize].offset >= 0 && entries[i as usize].offset < isize_));
    order.sort_unstable_by_key(|&i| (entries[i as usize].offset, i));
    let mut reach: i128 = -1;
    for &i in &order {
        let e = &mut entries[i as usize];
        if e.offset < reach {
            e.overlap = true;
        }
        reach = reach.max(e.offset + 30 + e.csize as i128);
    }

    // ---- skimming: ordinary stored members (ASCII names) of a large directory named skim_dir
    let mut skimmed: Vec<Skimmed> = Vec::new();
    if let Some(skim_dir) = opts.skim_dir {
        if !skim_dir.is_empty() && opts.skim_min > 0 {
            let want = skim_dir.as_bytes();
            let dir_of = |raw: &'a [u8]| -> &'a [u8] {
                &raw[..raw.iter().rposition(|&b| b == b'/').map(|i| i + 1).unwrap_or(0)]
            };
            // directory groups (entries of one directory are usually consecutive: hash once per run)
            let mut dmap: HashMap<&'a [u8], u32> = HashMap::new();
            let mut dids: Vec<u32> = Vec::with_capacity(n);
            let mut dirs: Vec<(&'a [u8], u32)> = Vec::new(); // (directory, entries)
            let mut last: Option<(&'a [u8], u32)> = None;
            for e in &entries {
                let dir = dir_of(e.raw(d));
                let g = match last {
                    Some((l, g)) if l == dir => g,
                    _ => {
                        let next = dirs.len() as u32;
                        let g = *dmap.entry(dir).or_insert(next);
                        if g == next {
                            dirs.push((dir, 0));
                        }
                        last = Some((dir, g));
                        g
                    }
                };
                dirs[g as usize].1 += 1;
                dids.push(g);
            }
            // a directory is skimmed when it is named skim_dir and large enough
            let eligible: Vec<bool> = dirs
                .iter()
                .map(|&(dir, size)| {
                    !dir.is_empty()
                        && size as u64 >= opts.skim_min
                        && dir[..dir.len() - 1].rsplit(|&b| b == b'/').next() == Some(want)
                })
                .collect();
            let mut slot: Vec<Option<usize>> = vec![None; dirs.len()];
            for (i, e) in entries.iter_mut().enumerate() {
                let g = dids[i] as usize;
                if eligible[g]
                    && e.raw(d).is_ascii()
                    && e.method == 0
                    && e.flags & !(FLAG_DESCRIPTOR | FLAG_UTF8) == 0
                    && e.csize == e.usize_
                    && e.duplicate.is_none()
                    && e.errors.is_none()
                    && !e.overlap
                    && e.offset >= 0
                    && e.offset + 30 + e.csize as i128 <= bound
                {
                    e.skimmed = true;
                    let k = match slot[g] {
                        Some(k) => k,
                        None => {
                            let dir_name = String::from_utf8_lossy(dirs[g].0).into_owned();
                            skimmed.push(Skimmed { dir: dir_name, members: 0, compressed_size: 0 });
                            slot[g] = Some(skimmed.len() - 1);
                            skimmed.len() - 1
                        }
                    };
                    skimmed[k].members += 1;
                    skimmed[k].compressed_size = skimmed[k].compressed_size.wrapping_add(e.csize);
                }
            }
        }
    }

    // ---- members: every entry not skimmed, with its local header read
    let mut members: Vec<Member<'a>> = Vec::new();
    let mut member_of = std::mem::take(&mut scratch.member_of);
    member_of.resize(n, u32::MAX);
    for (i, e) in entries.iter().enumerate() {
        if e.skimmed {
            continue;
        }
        let mut m = Member::blank(i as u64, true, e.offset);
        m.raw = e.raw(d);
        m.name = decode_name(m.raw, e.flags).0;
        m.flags = e.flags;
        m.method = e.method;
        m.crc32 = e.crc;
        m.compressed_size = e.csize;
        m.uncompressed_size = e.usize_;
        m.errors = e.errors.as_deref().map(<[_]>::to_vec).unwrap_or_default();
        m.duplicate = e.duplicate.map(Duplicate::name);
        m.overlap = e.overlap;
        if opts.local_headers {
            read_local(d, bound, &mut m, true);
        }
        member_of[i] = members.len() as u32;
        members.push(m);
    }

    // ---- gaps: bytes before the directory that no member accounts for; local headers found there
    let mut gaps: Vec<Gap> = Vec::new();
    if opts.local_headers {
        // the spans of the members and the skimmed entries, by (offset, index) as `order` is
        let mut reach: i128 = 0;
        let mut owner: Option<u32> = None; // member index of the span reaching furthest (MAX: skimmed)
        for &i in &order {
            let e = &entries[i as usize];
            let (start, mi) = (e.offset, member_of[i as usize]);
            let end = if e.skimmed {
                e.offset + 30 + e.csize as i128
            } else {
                match members[mi as usize].span_end {
                    Some(end) => end,
                    None => continue,
                }
            };
            if start > reach {
                let slack = owner == Some(u32::MAX) && start - reach <= SKIM_SLACK;
                if !slack {
                    gaps.push(Gap { offset: reach as u64, length: (start - reach) as u64 });
                }
            } else if let Some(o) = owner {
                if start < reach {
                    let target = if mi != u32::MAX { mi } else { o };
                    members[target as usize].overlap = true;
                }
            }
            if end > reach {
                reach = end;
                owner = Some(mi);
            }
        }
        if reach < bound {
            let slack = owner == Some(u32::MAX) && bound - reach <= SKIM_SLACK;
            if !slack {
                gaps.push(Gap { offset: reach as u64, length: (bound - reach) as u64 });
            }
        }
        let mut index = n as u64;
        let mut orphans = 0u64;
        for gap in &gaps {
            let mut p = gap.offset as i128;
            let stop = (gap.offset + gap.length) as i128;
            if sig_at(d, p, SIG_DESCRIPTOR) && sig_at(d, p + 4, SIG_LOCAL) {
                p += 4; // spanning marker
            }
            while p + 30 <= stop && sig_at(d, p, SIG_LOCAL) && limit.is_none() {
                if n as u64 + orphans >= limits.max_members {
                    limit = Some("members");
                    break;
                }
                let nlen = u16_at(d, p as usize + 26) as u64;
                if name_bytes + nlen > limits.max_name_bytes {
                    limit = Some("names");
                    break;
                }
                name_bytes += nlen;
                let mut m = Member::blank(index, false, p);
                index += 1;
                orphans += 1;
                read_local(d, stop, &mut m, false);
                if m.local.is_some() {
                    let key: &[u8] = m.raw;
                    m.duplicate = if exact.find(&seed, d, &entries, key).is_some() {
                        Some("exact")
                    } else if any_upper {
                        folded.find(&seed, d, &entries, key).map(|_| "case")
                    } else if has_upper(key) {
                        exact.find(&seed, d, &entries, &key.to_ascii_lowercase()).map(|_| "case")
                    } else {
                        None
                    };
                }
                let next = m.span_end;
                members.push(m);
                match next {
                    Some(e) if e > p => p = e,
                    _ => break,
                }
            }
            if limit.is_some() {
                break;
            }
        }
    }

    let start = order.first().map(|&i| entries[i as usize].offset as u64);
    (scratch.entries, scratch.exact, scratch.folded, scratch.order, scratch.member_of) =
        (entries, exact, folded, order, member_of);
    scratch.give_back();
    Facts {
        size: size as u64,
        eocd,
        zip64,
        cd_start,
        shift,
        start,
        trailing,
        entries_declared: declared,
        entries_found: n as u64,
        members,
        skimmed,
        gaps,
        errors,
        limit,
    }
}

/// Parse the local header at `m.header_offset`: local facts, data offset, descriptor, head, span.
fn read_local<'a>(d: &'a [u8], bound: i128, m: &mut Member<'a>, central: bool) {
    let size = d.len() as i128;
    let off = m.header_offset;
    if off < 0 || off + 30 > size || !sig_at(d, off, SIG_LOCAL) {
        m.errors.push("local-header-missing");
        return;
    }
    let o = off as usize;
    let flags = u16_at(d, o + 6);
    let method = u16_at(d, o + 8);
    let crc = u32_at(d, o + 14);
    let csize = u32_at(d, o + 18) as u64;
    let usize_ = u32_at(d, o + 22) as u64;
    let nlen = u16_at(d, o + 26) as usize;
    let xlen = u16_at(d, o + 28);
    let data_offset = o + 30 + nlen + xlen as usize;
    if data_offset > d.len() {
        m.errors.push("local-header-truncated");
        return;
    }
    let name_raw = &d[o + 30..o + 30 + nlen];
    let (name, utf8_ok) = decode_name(name_raw, flags);
    if !utf8_ok {
        m.errors.push("name-not-utf8");
    }
    let mut values = [usize_, csize];
    let zip64 = zip64_extra(&d[o + 30 + nlen..data_offset], &mut values, &mut m.errors, "local-extra-corrupt");
    let (usize_, csize) = (values[0], values[1]);
    m.local = Some(Local {
        name: name.to_string(),
        flags,
        method,
        crc32: crc,
        compressed_size: csize,
        uncompressed_size: usize_,
        extra_length: xlen,
    });
    m.data_offset = Some(data_offset as u64);
    let all_flags;
    if central {
        let lazy = flags & FLAG_DESCRIPTOR != 0;
        if name_raw != m.raw {
            m.mismatch.push("name");
        }
        if flags != m.flags {
            m.mismatch.push("flags");
        }
        if method != m.method {
            m.mismatch.push("method");
        }
        if crc != m.crc32 && !(lazy && crc == 0) {
            m.mismatch.push("crc32");
        }
        if csize != m.compressed_size && !(lazy && csize == 0) {
            m.mismatch.push("compressed_size");
        }
        if usize_ != m.uncompressed_size && !(lazy && usize_ == 0) {
            m.mismatch.push("uncompressed_size");
        }
        all_flags = flags | m.flags;
    } else {
        m.raw = name_raw;
        m.name = name;
        m.flags = flags;
        m.method = method;
        m.crc32 = crc;
        m.compressed_size = csize;
        m.uncompressed_size = usize_;
        all_flags = flags;
        if flags & FLAG_DESCRIPTOR != 0 && csize == 0 {
            m.errors.push("size-unknown");
            let a = data_offset as i128;
            m.head = Some(slice(d, a, (a + HEAD_BYTES).min(size)));
            return;
        }
    }
    let a = data_offset as i128;
    let data_end = a + m.compressed_size as i128;
    if data_end > bound {
        m.errors.push("data-out-of-range");
    }
    m.head = Some(slice(d, a, (a + (m.compressed_size as i128).min(HEAD_BYTES)).min(size)));
    let mut end = data_end;
    if all_flags & FLAG_DESCRIPTOR != 0 {
        let width: i128 =
            if zip64 || m.compressed_size >= U32MAX || m.uncompressed_size >= U32MAX { 8 } else { 4 };
        let signed = data_end + 4 <= size && sig_at(d, data_end, SIG_DESCRIPTOR);
        let p = data_end + if signed { 4 } else { 0 };
        if p + 4 + 2 * width <= size {
            let q = p as usize;
            let dcrc = u32_at(d, q);
            let (dcs, dus) = if width == 8 {
                (u64_at(d, q + 4), u64_at(d, q + 12))
            } else {
                (u32_at(d, q + 4) as u64, u32_at(d, q + 8) as u64)
            };
            m.descriptor = Some(Descriptor { crc32: dcrc, compressed_size: dcs, uncompressed_size: dus, signature: signed });
            if dcrc != m.crc32 {
                m.mismatch.push("descriptor_crc32");
            }
            if dcs != m.compressed_size {
                m.mismatch.push("descriptor_compressed_size");
            }
            if dus != m.uncompressed_size {
                m.mismatch.push("descriptor_uncompressed_size");
            }
            end = p + 4 + 2 * width;
        } else {
            m.errors.push("descriptor-missing");
        }
    }
    m.span_end = Some(end);
}

// ------------------------------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_members: 100_000, max_name_bytes: 1 << 24 };
    const FULL: Options<'static> = Options { local_headers: true, skim_dir: None, skim_min: 0 };

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    /// A stored zip of `(name, data)` members, like Python's zipfile writes it.
    fn stored_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in members {
            let off = out.len() as u32;
            let crc = crc32(data);
            out.extend_from_slice(SIG_LOCAL);
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // flags
            out.extend_from_slice(&0u16.to_le_bytes()); // method
            out.extend_from_slice(&[0, 0, 0, 0]); // time, date
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(SIG_CENTRAL);
            central.extend_from_slice(&20u16.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes());
            central.extend_from_slice(&[0, 0, 0, 0]);
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&off.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_off = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(SIG_EOCD);
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_off.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn clean_zip() {
        let z = stored_zip(&[("a/data.pkl", b"\x80\x02}q\x00."), ("a/version", b"3\n")]);
        let f = analyze(&z, &LIMITS, &FULL);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(f.entries_found, 2);
        assert_eq!(f.entries_declared, Some(2));
        assert_eq!(f.start, Some(0));
        assert_eq!(f.shift, 0);
        assert_eq!(f.trailing, 0);
        assert!(f.gaps.is_empty());
        let m = &f.members[0];
        assert_eq!(m.name, "a/data.pkl");
        assert_eq!(m.data_offset, Some(30 + 10));
        assert_eq!(m.head, Some(&b"\x80\x02}q\x00."[..]));
        assert!(m.mismatch.is_empty() && m.errors.is_empty() && m.duplicate.is_none() && !m.overlap);
        assert_eq!(m.local.as_ref().unwrap().name, "a/data.pkl");
    }

    #[test]
    fn prepended_and_trailing_bytes() {
        let mut z = b"#!/bin/sh\nexit 0\n".to_vec();
        let n = z.len() as u64;
        z.extend(stored_zip(&[("x.pkl", b"N.")]));
        z.extend_from_slice(b"junk");
        let f = analyze(&z, &LIMITS, &FULL);
        // the end record is not the last 22 bytes any more, but it is still found
        assert_eq!(f.shift, n as i128);
        assert_eq!(f.start, Some(n));
        assert_eq!(f.trailing, 4);
        assert_eq!(f.members[0].data_offset, Some(n + 30 + 5));
        assert_eq!(f.gaps, vec![Gap { offset: 0, length: n }]);
        assert!(f.members.len() == 1);
    }

    #[test]
    fn name_mismatch_and_duplicates() {
        let mut z = stored_zip(&[("a/data.pkl", b"N."), ("a/DATA.pkl", b"N."), ("b", b"x"), ("b", b"y")]);
        // rename the first local header: same length, different name
        z[30..40].copy_from_slice(b"a/evil.pk1");
        let f = analyze(&z, &LIMITS, &FULL);
        assert_eq!(f.members[0].mismatch, vec!["name"]);
        assert_eq!(f.members[0].local.as_ref().unwrap().name, "a/evil.pk1");
        assert_eq!(f.members[0].duplicate, Some("case"));
        assert_eq!(f.members[1].duplicate, Some("case"));
        assert_eq!(f.members[2].duplicate, Some("exact"));
        assert_eq!(f.members[3].duplicate, Some("exact"));
    }

    #[test]
    fn hidden_local_header_in_a_gap() {
        let inner = stored_zip(&[("hidden.pkl", b"cos\nsystem\n")]);
        let local_len = 30 + 10 + 11;
        let mut z = inner[..local_len].to_vec();
        z.extend(stored_zip(&[("ok.txt", b"fine")]));
        // the visible zip's offsets are relative to its own start: shift them
        let f = analyze(&z, &LIMITS, &FULL);
        assert_eq!(f.shift, local_len as i128);
        assert_eq!(f.members.len(), 2);
        let hidden = &f.members[1];
        assert!(!hidden.central);
        assert_eq!(hidden.name, "hidden.pkl");
        assert_eq!(hidden.header_offset, 0);
        assert_eq!(hidden.head, Some(&b"cos\nsystem\n"[..]));
        assert_eq!(f.gaps, vec![Gap { offset: 0, length: local_len as u64 }]);
    }

    #[test]
    fn no_end_record_walks_local_headers() {
        let z = stored_zip(&[("a", b"1"), ("b", b"2")]);
        let cut = &z[..(30 + 1 + 1) * 2];
        let f = analyze(cut, &LIMITS, &FULL);
        assert_eq!(f.errors, vec![ZipError { code: "no-end-record", offset: None }]);
        assert_eq!(f.members.iter().map(|m| m.name.as_ref()).collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(f.members.iter().all(|m| !m.central));
    }

    #[test]
    fn skimming_summarises_a_tensor_directory() {
        let names: Vec<String> = (0..10).map(|i| format!("m/data/{i}")).collect();
        let mut members: Vec<(&str, &[u8])> = vec![("m/data.pkl", b"\x80\x02N.")];
        for n in &names {
            members.push((n.as_str(), b"\x00\x00\x80?"));
        }
        let z = stored_zip(&members);
        let opts = Options { local_headers: true, skim_dir: Some("data"), skim_min: 10 };
        let f = analyze(&z, &LIMITS, &opts);
        assert_eq!(f.members.len(), 1);
        assert_eq!(f.skimmed, vec![Skimmed { dir: "m/data/".into(), members: 10, compressed_size: 40 }]);
        assert!(f.gaps.is_empty());
        let opts = Options { local_headers: true, skim_dir: Some("data"), skim_min: 11 };
        assert_eq!(analyze(&z, &LIMITS, &opts).members.len(), 11);
    }

    #[test]
    fn hostile_declarations_never_panic() {
        let z = stored_zip(&[("a", b"1")]);
        for i in 0..z.len() {
            for v in [0u8, 0x7F, 0xFF] {
                let mut m = z.clone();
                m[i] = v;
                let _ = analyze(&m, &LIMITS, &FULL);
                let _ = analyze(&m[..i], &LIMITS, &FULL);
                let _ = analyze(&m[i..], &LIMITS, &FULL);
            }
        }
        // zip64 locator pointing far away, giant directory
        let mut e = b"PK\x03\x04".to_vec();
        e.extend_from_slice(&[0; 40]);
        e.extend_from_slice(SIG_ZIP64_LOCATOR);
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&(1u64 << 63).to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(SIG_EOCD);
        e.extend_from_slice(&[0xFF; 16]);
        e.extend_from_slice(&0u16.to_le_bytes());
        let f = analyze(&e, &LIMITS, &FULL);
        assert!(f.errors.iter().any(|x| x.code == "zip64-record-missing"));
    }

    #[test]
    fn limits_are_enforced() {
        let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
        let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let z = stored_zip(&members);
        let f = analyze(&z, &Limits { max_members: 10, max_name_bytes: 1 << 20 }, &FULL);
        assert_eq!(f.limit, Some("members"));
        assert_eq!(f.entries_found, 10);
        let f = analyze(&z, &Limits { max_members: 100, max_name_bytes: 20 }, &FULL);
        assert_eq!(f.limit, Some("names"));
    }

    #[test]
    fn cp437_names() {
        assert_eq!(decode_name(b"caf\x82", 0), (Cow::Borrowed("café"), true));
        assert_eq!(decode_name(b"caf\xc3\xa9", FLAG_UTF8), (Cow::Borrowed("café"), true));
        assert_eq!(decode_name(b"\xff", FLAG_UTF8), (Cow::Borrowed("\u{a0}"), false));
    }
}
