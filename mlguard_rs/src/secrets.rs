//! Secret rules: keyword-anchored regex matches in bytes (the kernel behind
//! `mlguard.engine.secret_matches`; its reference twin is `mlguard/engine/pure/secrets.py`).
//!
//! Plain Rust, no Python. A [`RuleSet`] is compiled once and searched many times; both engines
//! implement exactly these semantics:
//!
//! 1. Keyword hits. One Aho-Corasick automaton holds every rule's keywords (ASCII
//!    case-insensitive). A *hit* is every offset `s` where some keyword starts; at `s`, each rule
//!    whose keywords match there takes its longest one, of length `len` (shorter keywords of the
//!    same rule at the same offset have smaller windows). Hits are visited by increasing `s`.
//! 2. Windows. A hit gives its rule the window `[max(0, s - window), min(n, s + len + window))`.
//!    A rule's windows are merged in hit order: a window that overlaps or touches (starts at or
//!    before the end of) the rule's pending window extends it; otherwise the pending window is
//!    searched and the new one becomes pending. Merged windows are therefore disjoint and
//!    separated by at least one byte, so a match is never cut by a boundary the union of the
//!    windows includes, and a match is found at most once.
//! 3. Matches. In a window `[ws, we)` the rule's regex runs on `data[..we]` from `ws` (assertions
//!    such as `\b` see the byte before `ws`; the data ends at `we`): from `pos = ws`, while
//!    `pos < we`, take the leftmost-first match starting at or after `pos`; an empty match is
//!    skipped (`pos = its end + 1`), a non-empty one is kept when its `secret` group participates
//!    and the Shannon entropy of that group (bits per byte) is >= `min_entropy` (`pos = its end`).
//! 4. Limit. The result is the first `max_matches` matches in (start, rule) order; memory stays
//!    below `2 * max_matches` matches plus a few pending windows, whatever the data.
//!
//! Regexes are `regex::bytes` with Unicode disabled: `\w`, `\d`, `\s`, `\b` and case folding are
//! ASCII, `.` is any byte but `\n`; the search is linear in the window whatever the pattern.
//!
//! A rule set checks every pattern when it is made (parsed as `regex` parses it, a `secret`
//! group, no repetition of what can match the empty string, at most [`MAX_PIECES`] once counted
//! repetitions are expanded), but compiles a rule's regex only when a window first needs it: most
//! files meet the keywords of few rules, and compiling all ~70 bundled regexes costs ~15 ms.
//!
//! Speed: the keyword scan dominates. The automaton is built as a full DFA (a few hundred KiB for
//! ~100 keywords), about 3x faster than the default NFA; with many case-insensitive keywords no
//! SIMD prefilter applies, so it runs at DFA speed (~350-450 MB/s), and at memory speed when the
//! keywords start with a few rare bytes (the prefilter then skips to them).

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};
use regex::bytes::{CaptureLocations, Regex, RegexBuilder};
use regex_syntax::ast::{self, Ast};
use regex_syntax::hir::{Class, Hir, HirKind};
use std::fmt;
use std::sync::OnceLock;

/// Most pieces (literal bytes, class ranges, assertions, groups) a pattern may have once its
/// counted repetitions are expanded: bounds what compiling it can cost, far below the regex
/// crate's size limit (`(?:\w{1000}){1000}` and a 128-range class repeated 1,000 times are refused).
pub const MAX_PIECES: u64 = 100_000;

/// One rule as given: keywords (ASCII, matched case-insensitively), a pattern with a named
/// group `secret`, the window in bytes around each keyword hit, the entropy to report.
#[derive(Debug, Clone)]
pub struct Rule {
    pub keywords: Vec<Vec<u8>>,
    pub pattern: String,
    pub window: usize,
    pub min_entropy: f64,
}

/// A reported match: byte offsets in the data; `entropy` of the secret, rounded to 4 decimals.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub rule: usize,
    pub start: usize,
    pub end: usize,
    pub secret_start: usize,
    pub secret_end: usize,
    pub entropy: f64,
}

/// Why a rule set does not compile: the index of the offending rule and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub rule: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: {}", self.rule, self.message)
    }
}

impl std::error::Error for RuleError {}

struct Compiled {
    pattern: String,
    /// Built on first use: the regex, or why it does not compile.
    regex: OnceLock<Result<Regex, String>>,
    /// Index of the `secret` group.
    secret: usize,
    window: usize,
    min_entropy: f64,
}

/// A compiled rule set; immutable, so one can be shared by threads.
pub struct RuleSet {
    rules: Vec<Compiled>,
    keywords: AhoCorasick,
    /// Per automaton pattern (a distinct lowercased keyword): (rule, length of the rule's
    /// longest keyword that is a prefix of it), by increasing rule.
    owners: Vec<Vec<(usize, usize)>>,
}

impl RuleSet {
    pub fn new(rules: &[Rule]) -> Result<RuleSet, RuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        let mut distinct: Vec<Vec<u8>> = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let err = |message: String| RuleError { rule: i, message };
            if rule.keywords.is_empty() || rule.keywords.iter().any(|k| k.is_empty()) {
                return Err(err("needs at least one keyword, none empty".into()));
            }
            let secret = check(&rule.pattern).map_err(err)?;
            compiled.push(Compiled {
                pattern: rule.pattern.clone(),
                regex: OnceLock::new(),
                secret,
                window: rule.window,
                min_entropy: rule.min_entropy,
            });
            for k in &rule.keywords {
                let k = k.to_ascii_lowercase();
                if !distinct.contains(&k) {
                    distinct.push(k);
                }
            }
        }
        let owners = distinct
            .iter()
            .map(|k| {
                rules
                    .iter()
                    .enumerate()
                    .filter_map(|(r, rule)| {
                        rule.keywords
                            .iter()
                            .filter(|kw| {
                                k.len() >= kw.len() && k[..kw.len()].eq_ignore_ascii_case(kw)
                            })
                            .map(|kw| kw.len())
                            .max()
                            .map(|len| (r, len))
                    })
                    .collect()
            })
            .collect();
        // A DFA when it fits (it does for any realistic rule set), else the default automaton.
        let automaton = |kind| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .kind(kind)
                .build(&distinct)
        };
        let keywords = automaton(Some(AhoCorasickKind::DFA))
            .or_else(|_| automaton(None))
            .map_err(|e| RuleError {
                rule: rules.len().saturating_sub(1),
                message: format!("the keywords of the rule set do not fit an automaton: {e}"),
            })?;
        Ok(RuleSet {
            rules: compiled,
            keywords,
            owners,
        })
    }

    /// The matches of every rule in `data`, sorted by (start, rule); at most `max_matches`. An
    /// error only when a rule's regex, compiled on first use, exceeds the regex crate's limits
    /// (which [`MAX_PIECES`] keeps patterns well below).
    pub fn find(&self, data: &[u8], max_matches: usize) -> Result<Vec<Match>, RuleError> {
        let mut kept = Kept {
            max: max_matches,
            matches: Vec::new(),
        };
        if max_matches == 0 {
            return Ok(kept.matches);
        }
        let mut locs: Vec<Option<CaptureLocations>> = vec![None; self.rules.len()];
        let mut pending: Vec<Option<(usize, usize)>> = vec![None; self.rules.len()];
        let n = data.len();
        let mut at = 0;
        while let Some(hit) = self.keywords.find(Input::new(data).span(at..n)) {
            let s = hit.start();
            for &(r, len) in &self.owners[hit.pattern().as_usize()] {
                let window = self.rules[r].window;
                let (a, b) = (
                    s.saturating_sub(window),
                    s.saturating_add(len).saturating_add(window).min(n),
                );
                match &mut pending[r] {
                    Some((_, end)) if a <= *end => *end = (*end).max(b),
                    slot => {
                        if let Some((ws, we)) = slot.replace((a, b)) {
                            self.search(r, data, ws, we, &mut locs[r], &mut kept)?;
                        }
                    }
                }
            }
            at = s + 1;
        }
        for (r, slot) in pending.iter().enumerate() {
            if let Some((ws, we)) = *slot {
                self.search(r, data, ws, we, &mut locs[r], &mut kept)?;
            }
        }
        Ok(kept.finish())
    }

    fn search(
        &self,
        r: usize,
        data: &[u8],
        ws: usize,
        we: usize,
        locs: &mut Option<CaptureLocations>,
        kept: &mut Kept,
    ) -> Result<(), RuleError> {
        let rule = &self.rules[r];
        let regex = rule
            .regex
            .get_or_init(|| {
                RegexBuilder::new(&rule.pattern)
                    .unicode(false)
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| RuleError {
                rule: r,
                message: message.clone(),
            })?;
        let locs = locs.get_or_insert_with(|| regex.capture_locations());
        let hay = &data[..we];
        let mut pos = ws;
        while pos < we {
            let Some(m) = regex.captures_read_at(locs, hay, pos) else {
                break;
            };
            if m.start() == m.end() {
                pos = m.end() + 1;
                continue;
            }
            pos = m.end();
            if let Some((ss, se)) = locs.get(rule.secret) {
                let h = entropy(&data[ss..se]);
                if h >= rule.min_entropy {
                    kept.push(Match {
                        rule: r,
                        start: m.start(),
                        end: m.end(),
                        secret_start: ss,
                        secret_end: se,
                        entropy: round4(h),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Checks a pattern as [`RuleSet::new`] documents, without compiling it; returns the index of its
/// `secret` group.
fn check(pattern: &str) -> Result<usize, String> {
    let ast = ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| e.to_string())?;
    let hir = regex_syntax::hir::translate::TranslatorBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .translate(pattern, &ast)
        .map_err(|e| e.to_string())?;
    let facts = facts(&ast);
    if facts.repeats_empty {
        return Err(
            "a group repeated more than once can match the empty string (the engines \
                    treat its empty iterations differently)"
                .into(),
        );
    }
    if pieces(&hir) > MAX_PIECES {
        return Err(format!(
            "the pattern expands to more than {MAX_PIECES} pieces once its repetitions are counted"
        ));
    }
    facts
        .secret
        .ok_or_else(|| "the pattern has no group named `secret`".into())
}

/// What [`check`] needs to know of the pattern as written (its repetitions not simplified away).
struct Facts {
    /// Shortest match length: 0 when it can match the empty string.
    min_len: u64,
    /// Whether something that can match the empty string is repeated up to more than once.
    repeats_empty: bool,
    /// The capture index of the group named `secret`.
    secret: Option<usize>,
}

fn facts(node: &Ast) -> Facts {
    let leaf = |min_len| Facts {
        min_len,
        repeats_empty: false,
        secret: None,
    };
    match node {
        Ast::Empty(_) | Ast::Flags(_) | Ast::Assertion(_) => leaf(0),
        Ast::Literal(_)
        | Ast::Dot(_)
        | Ast::ClassUnicode(_)
        | Ast::ClassPerl(_)
        | Ast::ClassBracketed(_) => leaf(1),
        Ast::Group(g) => {
            let mut f = facts(&g.ast);
            if let ast::GroupKind::CaptureName { name, .. } = &g.kind {
                if name.name == "secret" {
                    f.secret = Some(name.index as usize);
                }
            }
            f
        }
        Ast::Repetition(rep) => {
            let f = facts(&rep.ast);
            let (min, max) = match &rep.op.kind {
                ast::RepetitionKind::ZeroOrOne => (0, Some(1)),
                ast::RepetitionKind::ZeroOrMore => (0, None),
                ast::RepetitionKind::OneOrMore => (1, None),
                ast::RepetitionKind::Range(ast::RepetitionRange::Exactly(n)) => (*n, Some(*n)),
                ast::RepetitionKind::Range(ast::RepetitionRange::AtLeast(n)) => (*n, None),
                ast::RepetitionKind::Range(ast::RepetitionRange::Bounded(m, n)) => (*m, Some(*n)),
            };
            Facts {
                min_len: f.min_len.saturating_mul(u64::from(min)),
                repeats_empty: f.repeats_empty || (max.is_none_or(|m| m > 1) && f.min_len == 0),
                secret: f.secret,
            }
        }
        Ast::Alternation(alt) => combine(alt.asts.iter().map(facts), |a, b| a.min(b)),
        Ast::Concat(cat) => combine(cat.asts.iter().map(facts), |a, b| a.saturating_add(b)),
    }
}

/// The facts of a concatenation or an alternation of `parts`, their `min_len` folded by `min_len`.
fn combine(parts: impl Iterator<Item = Facts>, min_len: impl Fn(u64, u64) -> u64) -> Facts {
    parts
        .reduce(|a, b| Facts {
            min_len: min_len(a.min_len, b.min_len),
            repeats_empty: a.repeats_empty || b.repeats_empty,
            secret: a.secret.or(b.secret),
        })
        .unwrap_or(Facts {
            min_len: 0,
            repeats_empty: false,
            secret: None,
        })
}

/// What compiling `hir` costs, roughly in automaton states and transitions: literal bytes, the
/// ranges of each class (a class of 128 ranges weighs 128), assertions and groups, with every
/// counted repetition expanded (saturating).
fn pieces(hir: &Hir) -> u64 {
    match hir.kind() {
        HirKind::Empty => 0,
        HirKind::Literal(lit) => lit.0.len() as u64,
        HirKind::Class(Class::Bytes(c)) => c.ranges().len().max(1) as u64,
        HirKind::Class(Class::Unicode(c)) => c.ranges().len().max(1) as u64,
        HirKind::Look(_) => 1,
        HirKind::Repetition(rep) => {
            let copies = u64::from(rep.max.unwrap_or(rep.min).max(rep.min)).saturating_add(1);
            pieces(&rep.sub).saturating_mul(copies)
        }
        HirKind::Capture(cap) => pieces(&cap.sub).saturating_add(1),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs
            .iter()
            .fold(subs.len() as u64, |n, sub| n.saturating_add(pieces(sub))),
    }
}

/// The matches found so far, cut back to the first `max` in (start, rule) order whenever they
/// reach `2 * max`.
struct Kept {
    max: usize,
    matches: Vec<Match>,
}

impl Kept {
    fn push(&mut self, m: Match) {
        self.matches.push(m);
        if self.matches.len() >= self.max.saturating_mul(2) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.matches.sort_unstable_by_key(|m| (m.start, m.rule));
        self.matches.truncate(self.max);
    }

    fn finish(mut self) -> Vec<Match> {
        self.trim();
        self.matches
    }
}

/// Shannon entropy in bits per byte: `-sum(p * log2(p))` over byte values in increasing order,
/// `p = count / len` (0 for empty input). The pure engine computes the same floats.
pub fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    let mut h = 0.0;
    for &c in counts.iter().filter(|&&c| c > 0) {
        let p = c as f64 / n;
        h -= p * p.log2();
    }
    h
}

/// `x` rounded to 4 decimals as Python's `round(x, 4)`: the exact value rounded half to even.
fn round4(x: f64) -> f64 {
    format!("{x:.4}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(keywords: &[&str], pattern: &str, window: usize, min_entropy: f64) -> Rule {
        Rule {
            keywords: keywords.iter().map(|k| k.as_bytes().to_vec()).collect(),
            pattern: pattern.into(),
            window,
            min_entropy,
        }
    }

    fn spans(set: &RuleSet, data: &[u8]) -> Vec<(usize, usize, usize, usize, usize)> {
        set.find(data, 1000)
            .unwrap()
            .iter()
            .map(|m| (m.rule, m.start, m.end, m.secret_start, m.secret_end))
            .collect()
    }

    #[test]
    fn keyword_anchors_the_search() {
        let set = RuleSet::new(&[rule(&["token"], r"token=(?P<secret>\w+)", 16, 0.0)]).unwrap();
        assert_eq!(spans(&set, b"x TOKEN=abc y"), vec![]); // the regex itself is case-sensitive
        assert_eq!(spans(&set, b"x token=abc y"), vec![(0, 2, 11, 8, 11)]);
        // a regex match far from any keyword is not searched for
        let set = RuleSet::new(&[rule(&["key"], r"(?P<secret>\d{4})", 4, 0.0)]).unwrap();
        assert_eq!(spans(&set, b"1234 ....... key 5678"), vec![]);
        assert_eq!(
            spans(&set, b"1234 ....... KeY5678"),
            vec![(0, 16, 20, 16, 20)]
        );
    }

    #[test]
    fn window_ends_cut_and_merge() {
        let set = RuleSet::new(&[rule(&["k"], r"(?P<secret>[a-z]+)", 2, 0.0)]).unwrap();
        // window [3, 8): the run "xxkyy" is cut on both sides
        assert_eq!(spans(&set, b"aaaxxkyyaaa"), vec![(0, 3, 8, 3, 8)]);
        // two hits whose windows touch ([0,5) and [5,10)) are one window
        assert_eq!(spans(&set, b"zzkzzzzkzzzz"), vec![(0, 0, 10, 0, 10)]);
        // a gap of one byte keeps them apart
        assert_eq!(
            spans(&set, b"zzkzzzzzkzzzz"),
            vec![(0, 0, 5, 0, 5), (0, 6, 11, 6, 11)]
        );
    }

    #[test]
    fn boundary_assertions_see_before_the_window_but_not_after() {
        let set = RuleSet::new(&[rule(&["k"], r"\b(?P<secret>k\w*)\b", 0, 0.0)]).unwrap();
        assert_eq!(spans(&set, b"ak"), vec![]); // `\b` sees the `a` before the window
        assert_eq!(spans(&set, b" kab"), vec![(0, 1, 2, 1, 2)]); // the window ends after `k`
    }

    #[test]
    fn longest_keyword_per_rule_and_shared_keywords() {
        let set = RuleSet::new(&[
            rule(&["sk", "sk-ant-"], r"(?P<secret>sk-\w+)", 0, 0.0),
            rule(&["SK"], r"(?P<secret>sk)", 0, 0.0),
        ])
        .unwrap();
        assert_eq!(
            spans(&set, b"sk-ant-x"),
            vec![(0, 0, 6, 0, 6), (1, 0, 2, 0, 2)]
        );
    }

    #[test]
    fn empty_matches_secret_group_and_entropy() {
        let set = RuleSet::new(&[rule(&["a"], r"a*(?P<secret>b)?", 4, 0.0)]).unwrap();
        // "aab" matches with the group, the empty match before `c` is skipped, "a" without group
        assert_eq!(spans(&set, b"aabca"), vec![(0, 0, 3, 2, 3)]);
        let set = RuleSet::new(&[rule(&["="], r"=(?P<secret>\w+)", 40, 2.0)]).unwrap();
        let found = set.find(b"x=aaaaaaaa y=abcd", 10).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].start, found[0].entropy), (12, 2.0));
        assert_eq!(set.find(b"y=abc", 10).unwrap(), vec![]); // log2(3) < 2
    }

    #[test]
    fn entropy_and_rounding() {
        assert_eq!(entropy(b""), 0.0);
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert_eq!(entropy(b"ab"), 1.0);
        assert_eq!(round4(entropy(b"abc")), 1.585);
        assert_eq!(round4(0.03125), 0.0312); // half to even, as Python's round()
        assert_eq!(round4(0.09375), 0.0938);
    }

    #[test]
    fn limit_keeps_the_first_matches_in_order() {
        let set = RuleSet::new(&[
            rule(&["x"], r"(?P<secret>x)", 0, 0.0),
            rule(&["x"], r"(?P<secret>x)", 0, 0.0),
        ])
        .unwrap();
        let data = b"x.".repeat(1000);
        let found = set.find(&data, 5).unwrap();
        let got: Vec<_> = found.iter().map(|m| (m.start, m.rule)).collect();
        assert_eq!(got, vec![(0, 0), (0, 1), (2, 0), (2, 1), (4, 0)]);
        assert_eq!(set.find(&data, 0).unwrap(), vec![]);
        assert_eq!(set.find(b"", 5).unwrap(), vec![]);
        assert_eq!(RuleSet::new(&[]).unwrap().find(&data, 5).unwrap(), vec![]);
    }

    #[test]
    fn bad_rules_name_their_index() {
        let ok = rule(&["a"], r"(?P<secret>a)", 0, 0.0);
        let err = |r: Rule| RuleSet::new(&[ok.clone(), r]).err().unwrap();
        assert_eq!(err(rule(&["a"], r"(?=a)(?P<secret>a)", 0, 0.0)).rule, 1);
        assert_eq!(
            err(rule(&["a"], r"(a)", 0, 0.0)).message,
            "the pattern has no group named `secret`"
        );
        assert_eq!(err(rule(&[], r"(?P<secret>a)", 0, 0.0)).rule, 1);
        assert_eq!(err(rule(&[""], r"(?P<secret>a)", 0, 0.0)).rule, 1);
        // checked without compiling: empty iterations, size, syntax
        for pattern in [
            r"(?P<secret>(?:a|)*b)",
            r"(?P<secret>(?:\b|a){1,3})",
            r"(?:(?P<secret>)x?)+",
        ] {
            assert!(
                err(rule(&["a"], pattern, 0, 0.0))
                    .message
                    .contains("empty string"),
                "{pattern}"
            );
        }
        let sparse: String = (0..=255u8)
            .step_by(2)
            .map(|b| format!("\\x{b:02x}"))
            .collect();
        for pattern in [
            r"(?P<secret>(?:\w{1000}){1000})".to_string(),
            format!("(?P<secret>[{sparse}]{{1000}})"),
        ] {
            assert!(err(rule(&["a"], &pattern, 0, 0.0))
                .message
                .contains("pieces"));
        }
        assert!(err(rule(&["a"], r"(?P<secret>\p{L})", 0, 0.0))
            .message
            .contains("Unicode"));
        assert_eq!(err(rule(&["a"], r"(?P<secret>a", 0, 0.0)).rule, 1);
        // what passes the check compiles, and only when a window needs it
        let set = RuleSet::new(&[
            ok.clone(),
            rule(&["zz"], r"(?P<secret>[a-z]{2000})", 0, 0.0),
        ])
        .unwrap();
        assert!(set.rules[1].regex.get().is_none());
        assert_eq!(set.find(b"zz", 5).unwrap(), vec![]);
        assert!(matches!(set.rules[1].regex.get(), Some(Ok(_))));
        assert!(set.rules[0].regex.get().is_none());
    }

    #[test]
    fn non_ascii_bytes_are_single_bytes() {
        let set = RuleSet::new(&[rule(&["key"], r"key:(?P<secret>.{3})", 8, 0.0)]).unwrap();
        assert_eq!(spans(&set, b"\xffkey:\xe9\x80\n"), vec![]); // `.` stops at \n
        assert_eq!(spans(&set, b"\xffkey:\xe9\x80z"), vec![(0, 1, 8, 5, 8)]);
    }
}
