//! A small mutation fuzzer on stable Rust: a seed corpus, a structure-aware
//! generator per target, byte-level mutations with an attacker's dictionary,
//! and a property check that must neither fail nor panic.
//!
//! There is no coverage instrumentation (that needs nightly). Instead each
//! check names the outcome class of its input (`"ok"`, `"err:BadEscape"`,
//! ...), and an input that reaches a class not seen before joins the corpus,
//! so mutations keep working from inputs that got somewhere different.
//!
//! Budgets, from the environment:
//! - `FUZZ_SECONDS`: run each target for this many seconds (`make fuzz`);
//!   the seed is then random unless `FUZZ_SEED` is set.
//! - otherwise each target runs its bounded number of executions (times
//!   `FUZZ_EXECS_SCALE`, default 1) from a fixed seed: that is the bounded
//!   run of `make test`, the same inputs at every run.
//!
//! A failure is shrunk (chunks removed while it still fails) and reported
//! with the seed and the input as a Rust byte string, to be added to
//! `regressions.rs` as a named test.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// SplitMix64: small, fast, good enough to drive mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// One of `words`.
    pub fn word<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }

    /// A count skewed towards small numbers, sometimes huge.
    pub fn count(&mut self, small: usize, huge: usize) -> usize {
        match self.below(10) {
            0 => self.below(huge + 1),
            1..=3 => self.below(small * 4 + 1),
            _ => self.below(small + 1),
        }
    }
}

/// What a check found: `Ok(outcome class)`, or `Err(the broken property)`.
pub type Checked = Result<String, String>;

/// A target's generator of structured inputs.
pub type Generator = Box<dyn Fn(&mut Rng) -> Vec<u8>>;

/// A target's property check.
pub type Check = Box<dyn Fn(&[u8]) -> Checked>;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// Executions of the bounded run (`make test`).
    pub bounded_execs: u64,
    /// Inputs longer than this are cut before the check (the targets' own
    /// limits are far below; this only keeps mutation cheap).
    pub max_len: usize,
    pub seeds: Vec<Vec<u8>>,
    /// Attacker's tokens inserted by mutation.
    pub dictionary: Vec<Vec<u8>>,
    pub generate: Generator,
    pub check: Check,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub execs: u64,
    pub seconds: f64,
    pub corpus: usize,
    pub classes: usize,
    pub seed: u64,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn run_check(t: &Target, input: &[u8]) -> Checked {
    match catch_unwind(AssertUnwindSafe(|| (t.check)(input))) {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".to_owned());
            Err(format!("panicked: {msg}"))
        }
    }
}

/// Removes chunks of a failing input while it still fails.
fn shrink(t: &Target, input: &[u8]) -> Vec<u8> {
    let mut best = input.to_vec();
    let mut chunk = best.len().div_ceil(2).max(1);
    let mut attempts = 0;
    while chunk >= 1 && attempts < 4000 {
        let mut i = 0;
        let mut progressed = false;
        while i < best.len() && attempts < 4000 {
            let mut candidate = best.clone();
            candidate.drain(i..(i + chunk).min(best.len()));
            attempts += 1;
            if run_check(t, &candidate).is_err() {
                best = candidate;
                progressed = true;
            } else {
                i += chunk;
            }
        }
        if !progressed {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    best
}

/// `bytes` as a Rust byte-string literal.
pub fn literal(bytes: &[u8]) -> String {
    let mut out = String::from("b\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

const INTERESTING_BYTES: &[u8] = &[
    0, 1, b'\t', b'\n', b'\r', b' ', b'"', b'#', b'%', b'&', b'\'', b',', b'-', b'.', b'/', b'0', b'1', b'9', b':',
    b';', b'=', b'?', b'@', b'[', b'\\', b']', b'{', b'}', b'~', 0x7f, 0x80, 0xc0, 0xe2, 0xef, 0xff,
];

/// One random edit of `input` (the corpus is `others`, for splicing).
fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, dictionary: &[Vec<u8>], others: &[Vec<u8>], max_len: usize) {
    let len = input.len();
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = *rng.pick(INTERESTING_BYTES);
        }
        2 | 3 if !dictionary.is_empty() => {
            let word = rng.pick(dictionary).clone();
            let at = rng.below(len + 1);
            if rng.one_in(3) && len > 0 {
                // overwrite instead of insert
                let end = (at + word.len()).min(len);
                input.splice(at..end, word);
            } else {
                input.splice(at..at, word);
            }
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = rng.count(8, len - at);
            input.drain(at..(at + n).min(len));
        }
        5 if len > 0 => {
            // repeat a chunk, sometimes many times ("huge counts")
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let chunk = input[at..at + n].to_vec();
            let times = rng.count(3, 3000).min(max_len.saturating_sub(len) / n);
            let repeated: Vec<u8> = chunk.iter().copied().cycle().take(n * times).collect();
            input.splice(at..at, repeated);
        }
        6 if !others.is_empty() => {
            let other = rng.pick(others);
            let from = rng.below(other.len() + 1);
            let to = from + rng.below(other.len() - from + 1);
            let at = rng.below(len + 1);
            if rng.one_in(2) {
                input.truncate(at);
            }
            let at = at.min(input.len());
            input.splice(at..at, other[from..to].iter().copied());
        }
        7 if len > 0 => input.truncate(rng.below(len)),
        8 => {
            // a run of ASCII digits replaced by an extreme number
            const NUMBERS: &[&str] = &[
                "0",
                "-0",
                "-1",
                "1",
                "255",
                "256",
                "65535",
                "65536",
                "2147483648",
                "4294967295",
                "4294967296",
                "9007199254740993",
                "18446744073709551615",
                "18446744073709551616",
                "1e308",
                "1e400",
                "-1e400",
                "0.5",
                "1.0",
                "1E2",
                "00",
                "0x10",
            ];
            let digits: Vec<usize> = (0..len).filter(|&i| input[i].is_ascii_digit()).collect();
            let number = rng.pick(NUMBERS).as_bytes().to_vec();
            if let Some(&start) = digits.get(rng.below(digits.len())) {
                let mut end = start;
                while end < len && input[end].is_ascii_digit() {
                    end += 1;
                }
                input.splice(start..end, number);
            } else {
                let at = rng.below(len + 1);
                input.splice(at..at, number);
            }
        }
        9 if len > 1 => {
            let (a, b) = (rng.below(len), rng.below(len));
            input.swap(a, b);
        }
        _ => {
            let at = rng.below(len + 1);
            input.insert(at, *rng.pick(INTERESTING_BYTES));
        }
    }
}

/// Runs `t` for its budget; panics with a reproducible report on the first failure.
pub fn run(t: &Target) -> Report {
    let seconds = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok());
    let seed = env_u64("FUZZ_SEED").unwrap_or_else(|| {
        if seconds.is_some() {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        } else {
            0x5eed_0000
                ^ t.name
                    .bytes()
                    .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        }
    });
    let execs_limit = match seconds {
        Some(_) => u64::MAX,
        None => t.bounded_execs.saturating_mul(env_u64("FUZZ_EXECS_SCALE").unwrap_or(1)),
    };
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut rng = Rng::new(seed);
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut classes: HashSet<String> = HashSet::new();
    let started = Instant::now();
    let mut execs = 0u64;
    let mut pending_seeds = t.seeds.iter();
    loop {
        if execs >= execs_limit || deadline.is_some_and(|d| execs.is_multiple_of(64) && Instant::now() >= d) {
            break;
        }
        let mut input = if let Some(seed_input) = pending_seeds.next() {
            seed_input.clone()
        } else if corpus.is_empty() || rng.one_in(4) {
            (t.generate)(&mut rng)
        } else {
            let mut input = rng.pick(&corpus).clone();
            for _ in 0..1 + rng.count(2, 12) {
                mutate_once(&mut rng, &mut input, &t.dictionary, &corpus, t.max_len);
            }
            input
        };
        input.truncate(t.max_len);
        execs += 1;
        match run_check(t, &input) {
            Ok(class) => {
                if classes.insert(class) || (corpus.len() < 64 && rng.one_in(16)) {
                    if corpus.len() >= 512 {
                        let evict = rng.below(corpus.len());
                        corpus[evict] = input;
                    } else {
                        corpus.push(input);
                    }
                }
            }
            Err(why) => {
                let small = shrink(t, &input);
                let why_small = run_check(t, &small).err().unwrap_or(why.clone());
                panic!(
                    "fuzz target {} failed after {execs} executions (FUZZ_SEED={seed}): {why}\n\
                     shrunk input ({} bytes): {why_small}\n{}\n\
                     Add it to core/tests/fuzz/regressions.rs as a named test.",
                    t.name,
                    small.len(),
                    literal(&small)
                );
            }
        }
    }
    let report = Report {
        execs,
        seconds: started.elapsed().as_secs_f64(),
        corpus: corpus.len(),
        classes: classes.len(),
        seed,
    };
    println!(
        "fuzz {:<18} {:>9} executions in {:>6.1} s ({:>7.0}/s), {} outcome classes, corpus {}, FUZZ_SEED={}",
        t.name,
        report.execs,
        report.seconds,
        report.execs as f64 / report.seconds.max(1e-9),
        report.classes,
        report.corpus,
        report.seed
    );
    report
}
