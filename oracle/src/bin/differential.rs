//! `differential`: the kernel's nf_conntrack against refwatch's `ConnTable`, packet by
//! packet. See `--help` and the crate docs.

use std::process::ExitCode;

use refwatch_oracle::options::{self, Command, Options};

/// Exit status when the harness cannot run here or fails.
const EXIT_UNAVAILABLE: u8 = 3;

fn main() -> ExitCode {
    restore_sigpipe();
    let opts = match options::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(o)) => o,
        Err(e) => {
            eprintln!("differential: {e}\n(see `differential --help`)");
            return ExitCode::from(2);
        }
    };
    imp::main(&opts)
}

/// Dies quietly on a closed pipe (`differential | head`) instead of panicking in `println!`.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting SIGPIPE's disposition to the default at the start of `main`, before any
    // thread exists; no handler of ours is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Reports that the kernel side cannot run: exit 0 with `--skip-unavailable`, else 3.
fn unavailable(opts: &Options, missing: &[String]) -> ExitCode {
    let what = missing.join("; ");
    if opts.skip_unavailable {
        println!("oracle: SKIPPED (--skip-unavailable): the kernel side cannot run here: {what}");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "oracle: cannot run the kernel side here: {what}\n\
             (pass --skip-unavailable to exit 0 instead)"
        );
        ExitCode::from(EXIT_UNAVAILABLE)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub fn main(opts: &Options) -> ExitCode {
        unavailable(
            opts,
            &["not Linux (the kernel side needs nf_conntrack, tun devices and network namespaces)"
                .to_string()],
        )
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use refwatch_oracle::departures::{self, Departure};
    use refwatch_oracle::gen;
    use refwatch_oracle::kernel::KernelSide;
    use refwatch_oracle::minimize;
    use refwatch_oracle::netns;
    use refwatch_oracle::notation::parse_steps;
    use refwatch_oracle::report::{describe, Report};
    use refwatch_oracle::runner::{Origin, Runner, SeqInput, SeqResult};
    use refwatch_oracle::script;
    use std::path::Path;
    use std::time::Instant;

    /// What the kernel side needs that this machine lacks.
    fn missing_prerequisites() -> Vec<String> {
        let mut missing = Vec::new();
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            missing.push(
                "not root (creating a network namespace and tun devices needs CAP_NET_ADMIN)"
                    .into(),
            );
        }
        if !Path::new("/dev/net/tun").exists() {
            missing.push("/dev/net/tun does not exist (no tun driver)".into());
        }
        if netns::find_program("ip").is_none() {
            missing.push("`ip` not found (Debian: apt-get install iproute2)".into());
        }
        if netns::find_program("nft").is_none() {
            missing.push("`nft` not found (Debian: apt-get install nftables)".into());
        }
        missing
    }

    fn load_departures(path: &Path) -> Result<Vec<Departure>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        departures::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn inputs(opts: &Options) -> Result<Vec<SeqInput>, String> {
        if let Some(text) = &opts.steps {
            let steps = parse_steps(text).map_err(|e| e.to_string())?;
            return Ok(vec![SeqInput {
                origin: Origin::Adhoc,
                steps,
            }]);
        }
        let mut v: Vec<SeqInput> = script::scripts()
            .map_err(|e| format!("a built-in script does not parse: {e}"))?
            .into_iter()
            .map(|s| SeqInput {
                origin: Origin::Script(s.name),
                steps: s.steps,
            })
            .collect();
        v.extend((0..opts.sequences).map(|index| SeqInput {
            origin: Origin::Generated {
                seed: opts.seed,
                index,
            },
            steps: gen::generate(opts.seed, index),
        }));
        Ok(v)
    }

    fn trace(r: &SeqResult) {
        println!("# {}", r.input.origin);
        for p in &r.packets {
            let mark = if p.cmp.mismatches.is_empty() {
                "  "
            } else {
                "!!"
            };
            println!(
                "{mark} {:<40} kernel: {:<40} refwatch: {}",
                r.input.steps[p.step].to_string(),
                describe(&p.kernel),
                describe(&p.refwatch)
            );
            for m in &p.cmp.mismatches {
                println!(
                    "     {} differs: kernel {} refwatch {}",
                    m.field.name(),
                    m.kernel,
                    m.refwatch
                );
            }
        }
    }

    pub fn main(opts: &Options) -> ExitCode {
        let missing = missing_prerequisites();
        if !missing.is_empty() {
            return unavailable(opts, &missing);
        }
        // First, while the process is still single-threaded.
        if let Err(e) = netns::enter_private_netns() {
            return unavailable(opts, &[e.to_string()]);
        }
        let departures = match load_departures(&opts.departures) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("oracle: error: {e}");
                return ExitCode::from(EXIT_UNAVAILABLE);
            }
        };
        let inputs = match inputs(opts) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("oracle: {e}");
                return ExitCode::from(2);
            }
        };
        let kernel = match KernelSide::setup(opts.switches) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("oracle: error: setting up the kernel side: {e}");
                return ExitCode::from(EXIT_UNAVAILABLE);
            }
        };
        let sysctls = KernelSide::sysctls().join(" ");
        let release = netns::read_sysctl("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut runner = Runner::new(kernel);
        runner.cross_check_left = opts.cross_check;
        runner.refresh_probe = opts.refresh_probe;
        runner.switches = opts.switches;
        let mut report = Report::default();
        let started = Instant::now();
        let trace_all = opts.trace || opts.steps.is_some();
        for (i, input) in inputs.iter().enumerate() {
            match runner.run(input) {
                Ok(r) => {
                    if trace_all && !opts.json {
                        trace(&r);
                    }
                    report.add(&r);
                }
                Err(e) => {
                    eprintln!(
                        "oracle: error: {} ({}): {e}",
                        input.origin,
                        parse_note(input)
                    );
                    return ExitCode::from(EXIT_UNAVAILABLE);
                }
            }
            if (i + 1) % 2000 == 0 {
                eprintln!(
                    "oracle: {} of {} sequences, {:.0?}",
                    i + 1,
                    inputs.len(),
                    started.elapsed()
                );
            }
        }
        if opts.minimize {
            let keys: Vec<_> = report.patterns.keys().cloned().collect();
            let t = Instant::now();
            let mut shrunk = 0;
            for key in keys {
                let Some(example) = report.patterns.get(&key).map(|s| s.example.clone()) else {
                    continue;
                };
                match minimize::minimize(&mut runner, &example, &key) {
                    Ok(Some(smaller)) => {
                        shrunk += 1;
                        if let Some(stat) = report.patterns.get_mut(&key) {
                            stat.example = smaller;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("oracle: error while minimizing the example of {key}: {e}");
                        return ExitCode::from(EXIT_UNAVAILABLE);
                    }
                }
            }
            eprintln!(
                "oracle: minimized {shrunk} of {} examples in {:.1?}",
                report.patterns.len(),
                t.elapsed()
            );
        }
        let elapsed = started.elapsed();
        let sync = runner.kernel.sync.clone();
        let (passed, failed) = report.passed_failed();
        let judged = report.judged(&departures);
        let unlisted = judged.iter().filter(|j| j.departure.is_none()).count();
        let stale = report.stale(&departures);
        let summary = format!(
            "REFWATCH-ORACLE seed={} sequences={} packets={} passed={passed} failed={failed} \
             patterns={} unlisted={unlisted} stale={} seconds={:.1}",
            opts.seed,
            inputs.len(),
            passed + failed,
            judged.len(),
            stale.len(),
            elapsed.as_secs_f64()
        );
        let closing = format!("oracle: {passed} passed, {failed} failed");
        if opts.json {
            println!("{}", report.to_json(&departures, &sync, opts.seed));
            eprintln!("{summary}");
            eprintln!("{closing}");
        } else {
            println!("kernel: Linux {release}; {sysctls}");
            let seqs: Vec<String> = report
                .sequences
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!(
                "sequences: {} (seed {}); TCP sequences {}, of which the kernel reached ESTABLISHED in {}; {:.1?} spent in +Ns waits",
                seqs.join(", "),
                opts.seed,
                report.tcp_sequences,
                report.tcp_established,
                runner.waited
            );
            println!(
                "table reads: over ctnetlink; {} of them cross-checked against /proc/net/nf_conntrack (all agreed)",
                runner.kernel.cross_checked
            );
            println!(
                "barrier: {} packets written, {} forwarded, {} forwarded packets not yet readable when write() returned, {} stray packets{}",
                sync.packets,
                sync.forwarded,
                sync.late,
                sync.strays,
                if sync.stray_examples.is_empty() {
                    String::new()
                } else {
                    format!(" (e.g. {})", sync.stray_examples.join("; "))
                }
            );
            println!();
            print!("{}", report.table());
            println!();
            print!("{}", report.kernel_ignored_text(12));
            println!();
            print!("{}", report.patterns_text(&departures, opts.top));
            println!(
                "departures: {} rows in {}",
                departures.len(),
                opts.departures.display()
            );
            for d in &stale {
                println!(
                    "warning: stale departure (line {}): `{}` matched nothing this run",
                    d.line, d.pattern
                );
            }
            println!("{summary}");
            println!("{closing}");
        }
        if unlisted > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    fn parse_note(input: &SeqInput) -> String {
        refwatch_oracle::notation::format_steps(&input.steps)
    }
}
