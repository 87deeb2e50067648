//! Command-line parsing for `cargo xtask` (no dependencies: the grammar is a few flags).

use std::time::Duration;

/// Printed by `cargo xtask --help` and after a usage error.
pub const USAGE: &str = "\
Usage: cargo xtask verify [OPTIONS]
       cargo xtask oracle [ORACLE OPTIONS] [-- DIFFERENTIAL ARGS]
       cargo xtask traffic [TRAFFIC ARGS]

Runs every loom model (models/tests/loom_*.rs, RUSTFLAGS=\"--cfg loom\", target/loom) and
every shuttle model (models/tests/shuttle_*.rs, RUSTFLAGS=\"--cfg shuttle\", target/shuttle)
unmutated, then every mutant (models/mutants/*.patch, applied to a scratch copy in
target/mutants/work), and prints one report; every row shows its reason.

A mutant is killed only when its model fails by the model's own assertion (a panic in
models/tests/ or models/src/) or a checker's violation (loom: deadlock, causality violation,
leak, double panic; shuttle: deadlock), and only if that model passed unmutated in the same
run. A production panic (core/src/), a checker limit, a timeout or a crash is not a kill.
Each kill's depth is measured: the smallest loom preemption bound at which it fails (re-runs
at 0, 1, 2, ...; `0 (no race)` needs no race), or for shuttle whether one thread at a time
kills it too, with the failing schedule and whether it replays.

Exits 0 only if every model passed, every mutant was killed (or, for a control mutant with
`Expect:`, ended as expected) and, on a full run, every model has a kill at depth >= 1.
Refuses to start (exit 2) while LOOM_MAX_PERMUTATIONS, LOOM_MAX_DURATION, LOOM_MAX_BRANCHES,
LOOM_MAX_PREEMPTIONS, LOOM_CHECKPOINT_FILE, LOOM_CHECKPOINT_INTERVAL, SHUTTLE_RANDOM_SEED or
a REFWATCH_* harness variable is set. An ignored, missing or silent model is an error.
A model's seconds are its run alone; a mutant's are its run plus the depth search. Full
output of each run: target/verify-logs/ (a mutant's depth runs next to its log).

Options:
      --filter SUBSTR   only models whose name (or file::name) contains SUBSTR, and only
                        mutants whose name or model contains SUBSTR (the models those
                        mutants name run unmutated too)
      --skip-mutants    run the models only
      --only-mutants    run the mutants, and only the baselines of the models they name
      --json            print only JSON on stdout (progress still goes to stderr)
      --timeout SECS    time limit for each model run, with or without a mutant [default: 300]
  -h, --help            print this help

`cargo xtask oracle` builds and runs the kernel-differential harness (refwatch-oracle's
`differential` binary, release mode): the Linux kernel's nf_conntrack and refwatch's
ConnTable, fed the same packets side by side in a private network namespace (two tun
devices, nftables `ct state invalid drop`), over the scripted sequences and N generated
ones. Needs root, /dev/net/tun, `ip` and `nft` (Debian: apt-get install nftables). Prints
the agreement per field, every disagreement pattern with a minimal example, and ends with
`oracle: N passed, N failed` (packets). Its exit code is passed through: 0 when every
disagreement is listed in oracle/DEPARTURES.md, 1 when one is not, 3 when it cannot run.

Oracle options:
      --skip-unavailable  exit 0 (saying so) where the kernel side cannot run (not root, no
                          tun, no nft, not Linux)
      --seed S            seed of the generated sequences [default: 1]
      --sequences N       generated sequences [default: 10000]
      --json              print only JSON on stdout
  Anything after `--` goes to `differential` as is (e.g. -- --steps \"O S 1; R SA 9/2\",
  -- --top 15, -- --trace; see `cargo run -p refwatch-oracle --bin differential -- --help`).
";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Verify(Options),
    /// `oracle`: the arguments for the `differential` binary.
    Oracle(Vec<String>),
    /// `traffic`: the arguments for the `traffic` binary.
    Traffic(Vec<String>),
}

/// Options of `verify`.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub filter: Option<String>,
    pub skip_mutants: bool,
    pub only_mutants: bool,
    pub json: bool,
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            filter: None,
            skip_mutants: false,
            only_mutants: false,
            json: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Options {
    /// Whether any of `names` passes `--filter` (everything passes without one).
    pub fn selects(&self, names: &[&str]) -> bool {
        match &self.filter {
            None => true,
            Some(filter) => names.iter().any(|name| name.contains(filter.as_str())),
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        None => return Err("missing command (`verify`, `oracle` or `traffic`)".into()),
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("verify") => {}
        Some("oracle") => return parse_oracle(args),
        Some("traffic") => return Ok(Command::Traffic(args.collect())),
        Some(other) => {
            return Err(format!(
                "unknown command `{other}` (expected `verify`, `oracle` or `traffic`)"
            ))
        }
    }

    let mut options = Options::default();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline {
                Some(v) => Ok(v.to_string()),
                None => args.next().ok_or_else(|| format!("`{name}` needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--filter" => options.filter = Some(value("--filter")?),
            "--timeout" => {
                let secs = value("--timeout")?;
                let secs: u64 =
                    secs.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                        format!("`--timeout` wants whole seconds > 0, got `{secs}`")
                    })?;
                options.timeout = Duration::from_secs(secs);
            }
            "--skip-mutants" | "--only-mutants" | "--json" if inline.is_some() => {
                return Err(format!("`{flag}` takes no value"));
            }
            "--skip-mutants" => options.skip_mutants = true,
            "--only-mutants" => options.only_mutants = true,
            "--json" => options.json = true,
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    if options.skip_mutants && options.only_mutants {
        return Err("`--skip-mutants` and `--only-mutants` exclude each other".into());
    }
    Ok(Command::Verify(options))
}

/// Parses `oracle`'s options into the `differential` binary's arguments.
fn parse_oracle<I: Iterator<Item = String>>(mut args: I) -> Result<Command, String> {
    let mut out = Vec::new();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--" => {
                out.extend(args);
                break;
            }
            "--skip-unavailable" | "--json" if inline.is_some() => {
                return Err(format!("`{flag}` takes no value"));
            }
            "--skip-unavailable" | "--json" => out.push(flag),
            "--seed" | "--sequences" => {
                let v = match inline {
                    Some(v) => v.to_string(),
                    None => args
                        .next()
                        .ok_or_else(|| format!("`{flag}` needs a value"))?,
                };
                if v.parse::<u64>().is_err() {
                    return Err(format!("`{flag}` wants a whole number, got `{v}`"));
                }
                out.push(flag);
                out.push(v);
            }
            _ => return Err(format!("unknown argument `{arg}` (pass it after `--`)")),
        }
    }
    Ok(Command::Oracle(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &str) -> Result<Command, String> {
        parse(args.split_whitespace().map(String::from))
    }

    #[test]
    fn verify_with_flags() {
        let Ok(Command::Verify(o)) = parse_str("verify --filter refs --json --timeout=60") else {
            panic!("should parse");
        };
        assert_eq!(o.filter.as_deref(), Some("refs"));
        assert!(o.json && !o.skip_mutants && !o.only_mutants);
        assert_eq!(o.timeout, Duration::from_secs(60));
        assert!(o.selects(&["x", "two_refs"]));
        assert!(!o.selects(&["sticky"]));
    }

    #[test]
    fn help_and_errors() {
        assert_eq!(parse_str("--help"), Ok(Command::Help));
        assert_eq!(parse_str("verify -h"), Ok(Command::Help));
        assert!(parse_str("").is_err());
        assert!(parse_str("frobnicate").is_err());
        assert!(parse_str("verify --bogus").is_err());
        assert!(parse_str("verify --filter").is_err());
        assert!(parse_str("verify --json=1").is_err());
        assert!(parse_str("verify --timeout 0").is_err());
        assert!(parse_str("verify --skip-mutants --only-mutants").is_err());
    }

    #[test]
    fn oracle_passes_arguments_through() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(parse_str("oracle"), Ok(Command::Oracle(vec![])));
        assert_eq!(
            parse_str("oracle --skip-unavailable --seed=5 --sequences 20 --json -- --top 3"),
            Ok(Command::Oracle(args(
                "--skip-unavailable --seed 5 --sequences 20 --json --top 3"
            )))
        );
        assert_eq!(parse_str("oracle --help"), Ok(Command::Help));
        assert_eq!(
            parse_str("traffic --seed 3 --help"),
            Ok(Command::Traffic(args("--seed 3 --help")))
        );
        assert!(parse_str("oracle --seed").is_err());
        assert!(parse_str("oracle --seed x").is_err());
        assert!(parse_str("oracle --json=1").is_err());
        assert!(parse_str("oracle --top 3").is_err());
    }
}
