//! Command-line options of the `differential` binary.

use std::path::PathBuf;

/// Printed by `--help` and after a usage error.
pub const USAGE: &str = "\
Usage: differential [OPTIONS]

Drives the Linux kernel's nf_conntrack (in a private network namespace: two tun devices,
forwarding, nftables `ct state invalid drop`) and refwatch's ConnTable side by side, packet
by packet, over the scripted sequences and N generated ones, and reports where they
disagree. Needs root, /dev/net/tun, `ip` and `nft` (Debian: apt-get install nftables).
Exits 0 when every disagreement is listed in oracle/DEPARTURES.md, 1 when one is not,
2 on a usage error, 3 when the harness cannot run or fails.

Options:
      --seed S              seed of the generated sequences [default: 1]
      --sequences N         generated sequences [default: 10000]
      --steps NOTATION      run only this sequence (e.g. \"O S 1000; R SA 5000/1001\"), traced
      --trace               print every packet of every sequence
      --top N               print only the N most frequent patterns
      --cross-check N       check the first N table reads (over ctnetlink) against
                            /proc/net/nf_conntrack [default: 3000]
      --no-minimize         keep each pattern's first shortest example as found (by default
                            steps are dropped while the pattern still shows, re-running both
                            sides)
      --no-refresh-probe    do not set existing entries' timeouts to a sentinel before each
                            packet (the refresh field is then not compared)
      --loose               run both sides with nf_conntrack_tcp_loose=1 (refwatch's default,
                            as Linux's: a first ACK picks a connection up) instead of 0
      --be-liberal          run both sides with nf_conntrack_tcp_be_liberal=1 instead of 0
      --departures PATH     the departures table [default: oracle/DEPARTURES.md]
      --json                print only JSON on stdout (summary lines go to stderr)
      --skip-unavailable    exit 0 (saying so) when the kernel side cannot run here
  -h, --help                print this help
";

/// Parsed options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Generator seed.
    pub seed: u64,
    /// Generated sequences.
    pub sequences: u64,
    /// An ad-hoc sequence to run alone.
    pub steps: Option<String>,
    /// Print every packet.
    pub trace: bool,
    /// Print only this many patterns.
    pub top: Option<usize>,
    /// Table reads to cross-check against `/proc/net/nf_conntrack`.
    pub cross_check: u64,
    /// Shrink examples.
    pub minimize: bool,
    /// Probe whether each packet refreshed the kernel entry's timeout.
    pub refresh_probe: bool,
    /// `--loose`, `--be-liberal`.
    pub switches: crate::refside::Switches,
    /// The departures file.
    pub departures: PathBuf,
    /// JSON on stdout.
    pub json: bool,
    /// Exit 0 when the kernel side cannot run.
    pub skip_unavailable: bool,
}

/// The default departures file: `DEPARTURES.md` beside this crate's manifest.
pub fn default_departures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("DEPARTURES.md")
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            sequences: 10_000,
            steps: None,
            trace: false,
            top: None,
            cross_check: 3000,
            minimize: true,
            refresh_probe: true,
            switches: crate::refside::Switches::default(),
            departures: default_departures(),
            json: false,
            skip_unavailable: false,
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `--help`.
    Help,
    /// A run.
    Run(Options),
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut o = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().ok_or_else(|| format!("`{name}` needs a value")),
            }
        };
        let number = |name: &str, v: String| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("`{name}` wants a whole number, got `{v}`"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--seed" => o.seed = number("--seed", value("--seed")?)?,
            "--sequences" => o.sequences = number("--sequences", value("--sequences")?)?,
            "--top" => {
                let n = number("--top", value("--top")?)?;
                o.top = Some(usize::try_from(n).map_err(|_| "`--top` is too large")?);
            }
            "--cross-check" => o.cross_check = number("--cross-check", value("--cross-check")?)?,
            "--steps" => o.steps = Some(value("--steps")?),
            "--departures" => o.departures = PathBuf::from(value("--departures")?),
            "--trace" | "--json" | "--skip-unavailable" | "--no-minimize"
            | "--no-refresh-probe" | "--loose" | "--be-liberal"
                if inline.is_some() =>
            {
                return Err(format!("`{flag}` takes no value"));
            }
            "--trace" => o.trace = true,
            "--no-minimize" => o.minimize = false,
            "--no-refresh-probe" => o.refresh_probe = false,
            "--loose" => o.switches.loose = true,
            "--be-liberal" => o.switches.be_liberal = true,
            "--json" => o.json = true,
            "--skip-unavailable" => o.skip_unavailable = true,
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    Ok(Command::Run(o))
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn flags() {
        let Ok(Command::Run(o)) = p("--seed 7 --sequences=20 --json --skip-unavailable --top 3")
        else {
            panic!()
        };
        assert_eq!((o.seed, o.sequences, o.top), (7, 20, Some(3)));
        assert!(o.json && o.skip_unavailable && !o.trace);
        assert_eq!(p(""), Ok(Command::Run(Options::default())));
        assert_eq!(p("-h"), Ok(Command::Help));
        for bad in [
            "--seed",
            "--seed x",
            "--json=1",
            "--bogus",
            "--sequences -1",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
