//! `traffic`: real kernel TCP and UDP stacks in two private network namespaces talk through
//! refwatch's conntrack inline, and refwatch's table is compared flow by flow with the
//! kernel's own conntrack in the client namespace.
//!
//! Namespace A (clients) and namespace B (servers) each have a tun device; a userspace
//! forwarder moves packets between them, tracks every one with [`ConnTable`], drops what
//! refwatch calls invalid and a seeded fraction more (to force retransmissions). A runs
//! nftables with `ct state` rules on its output and input hooks, so the kernel's conntrack
//! judges the same packets (loss is applied A→B after tracking and B→A before it, so both
//! trackers see exactly the packets that leave and reach A's stack). At the end every flow
//! in A's `nf_conntrack` must be in refwatch's table with the same state, assured flag and
//! timeout (within a tolerance), and refwatch must hold no flow the kernel lacks.
//!
//! Needs root, `/dev/net/tun`, `ip` and `nft`; everything it creates lives in namespaces held
//! only by file descriptors, so it all vanishes when the process exits. Run with `--help` for
//! options. The last line printed is `traffic: N passed, N failed`.

mod compare;
mod error;
mod forwarder;
mod kernel;
mod lab;
mod mirror;
mod netns;
mod probe;
mod report;
mod rng;
mod traffic;
mod tun;

use error::{failed, Context, Error, Result};
use forwarder::{ForwardConfig, Forwarder};
use refwatch::conntrack::{ConnTable, Tuple};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: traffic [options]
  --conns N            concurrent TCP connections (default 32)
  --request-bytes N    bytes each client sends (default 1048576)
  --reply-bytes N      bytes each server sends back (default 262144)
  --udp-flows N        UDP flows, every other one long-lived (default 4)
  --udp-requests N     exchanges of a short UDP flow (default 20)
  --loss F             fraction of packets dropped each way, e.g. 0.01 or 1% (default 1%)
  --seed N             seed of the payloads and of the loss pattern (default: from the clock)
  --timeout SECS       bound on every blocking socket call (default 60)
  --tolerance SECS     allowed timeout difference per flow (default 3)
  --mtu N              MTU of both devices (default 1500)
  --no-gso             one segment per packet (gso_max_segs 1), so A's conntrack sees segments
  --observe            deliver what refwatch calls invalid (marked) instead of dropping it, so
                       the kernel judges those packets too
  --verbose            list every flow of the comparison, not only disagreements
  --drain SECS         how long to wait for the last segments after the traffic (default 10)
  --skip-unavailable   exit 0 (saying so) when the machine cannot run the test
  --help               this text";

/// Command-line options.
#[derive(Clone, Debug)]
struct Options {
    conns: usize,
    request_bytes: usize,
    reply_bytes: usize,
    udp_flows: usize,
    udp_requests: u32,
    loss: f64,
    seed: Option<u64>,
    timeout: Duration,
    tolerance: Duration,
    mtu: u32,
    no_gso: bool,
    observe: bool,
    verbose: bool,
    drain: Duration,
    skip_unavailable: bool,
    help: bool,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> std::result::Result<Options, String> {
        let mut o = Options {
            conns: 32,
            request_bytes: 1 << 20,
            reply_bytes: 256 << 10,
            udp_flows: 4,
            udp_requests: 20,
            loss: 0.01,
            seed: None,
            timeout: Duration::from_secs(60),
            tolerance: Duration::from_secs(3),
            mtu: 1500,
            no_gso: false,
            observe: false,
            verbose: false,
            drain: Duration::from_secs(10),
            skip_unavailable: false,
            help: false,
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            fn num<T: std::str::FromStr>(name: &str, v: &str) -> std::result::Result<T, String> {
                v.parse().map_err(|_| format!("{name}: cannot parse {v:?}"))
            }
            match arg.as_str() {
                "--conns" => o.conns = num("--conns", &value("--conns")?)?,
                "--request-bytes" => o.request_bytes = num(&arg, &value(&arg)?)?,
                "--reply-bytes" => o.reply_bytes = num(&arg, &value(&arg)?)?,
                "--udp-flows" => o.udp_flows = num(&arg, &value(&arg)?)?,
                "--udp-requests" => o.udp_requests = num(&arg, &value(&arg)?)?,
                "--loss" => {
                    let v = value(&arg)?;
                    o.loss = match v.strip_suffix('%') {
                        Some(p) => num::<f64>(&arg, p)? / 100.0,
                        None => num(&arg, &v)?,
                    };
                    if !(0.0..1.0).contains(&o.loss) {
                        return Err(format!("--loss must be in [0, 1), got {v}"));
                    }
                }
                "--seed" => o.seed = Some(num(&arg, &value(&arg)?)?),
                "--timeout" => o.timeout = Duration::from_secs(num(&arg, &value(&arg)?)?),
                "--tolerance" => o.tolerance = Duration::from_secs(num(&arg, &value(&arg)?)?),
                "--mtu" => o.mtu = num(&arg, &value(&arg)?)?,
                "--no-gso" => o.no_gso = true,
                "--observe" => o.observe = true,
                "--verbose" => o.verbose = true,
                "--drain" => o.drain = Duration::from_secs(num(&arg, &value(&arg)?)?),
                "--skip-unavailable" => o.skip_unavailable = true,
                "--help" | "-h" => o.help = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if o.conns == 0 && o.udp_flows == 0 {
            return Err("nothing to do: --conns and --udp-flows are both 0".into());
        }
        Ok(o)
    }
}

/// Waits until the traffic has drained: no TCP socket left in either namespace except in
/// TIME_WAIT, and the forwarder quiet for a moment. Returns what was left if it never was.
fn drain(
    lab_a: &netns::Netns,
    lab_b: &netns::Netns,
    fwd: &Forwarder,
    limit: Duration,
) -> Result<Option<String>> {
    const QUIET: Duration = Duration::from_millis(300);
    let deadline = Instant::now() + limit;
    let mut seen = fwd.packets();
    loop {
        let mut busy = Vec::new();
        for ns in [lab_a, lab_b] {
            for (state, n) in kernel::tcp_socket_states(ns)? {
                if state != "TIME_WAIT" {
                    busy.push(format!("{}: {n} {state}", ns.name()));
                }
            }
        }
        let now = fwd.wait_for_packets(seen, QUIET);
        let quiet = now == seen;
        seen = now;
        if busy.is_empty() && quiet {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            return Ok(Some(if busy.is_empty() {
                "packets still moving".into()
            } else {
                busy.join(", ")
            }));
        }
    }
}

/// Per-device counters from `/proc/thread-self/net/dev`: (rx_drop, tx_drop).
fn device_drops(ns: &netns::Netns, dev: &str) -> Result<(u64, u64)> {
    let text = ns.read("/proc/thread-self/net/dev")?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{dev}:")))
        .ok_or_else(|| failed(format!("{dev} missing from /proc/net/dev in {}", ns.name())))?;
    let nums: Vec<u64> = line
        .split_once(':')
        .map(|(_, r)| {
            r.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if nums.len() < 12 {
        return Err(failed(format!("short /proc/net/dev line: {line}")));
    }
    Ok((nums[3], nums[11]))
}

fn run(opts: &Options, seed: u64) -> Result<report::Outcome> {
    lab::check_prerequisites()?;
    let lab = lab::build(lab::LabConfig {
        mtu: opts.mtu,
        no_gso: opts.no_gso,
    })?;
    let lab::Lab {
        a,
        b,
        tun_a,
        tun_b,
        tcp_options,
    } = lab;
    let (config, config_diffs) = mirror::from_kernel(&a)?;
    let table = Arc::new(ConnTable::new(config).context("building the ConnTable")?);
    let (probe_tx, probe_rx) = std::sync::mpsc::channel();
    let fwd = Forwarder::spawn(
        tun_a,
        tun_b,
        Arc::clone(&table),
        ForwardConfig {
            loss: opts.loss,
            seed,
            observe: opts.observe,
        },
        probe_tx,
    )?;
    probe::send(&a)?;
    let probe = probe_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| failed("the probe sent from A never reached the forwarder"))?;
    let plan = traffic::Plan {
        conns: opts.conns,
        request_bytes: opts.request_bytes,
        reply_bytes: opts.reply_bytes,
        udp_flows: opts.udp_flows,
        udp_requests: opts.udp_requests,
        seed,
        timeout: opts.timeout,
    };
    let started = Instant::now();
    let traffic = traffic::run(&a, &b, plan)?;
    let undrained = drain(&a, &b, &fwd, opts.drain)?;
    let (fwd_report, tun_a, tun_b) = fwd.stop()?;
    // Read both tables back to back, so that their timeouts are comparable.
    let kernel_flows = kernel::conntrack(&a)?;
    let mut labels: HashMap<Tuple, String> = HashMap::new();
    for c in &traffic.tcp {
        if let Some(p) = c.client_port {
            if let Ok(t) = Tuple::tcp(
                SocketAddr::from((lab::A_ADDR, p)),
                SocketAddr::from((lab::B_ADDR, 5000)),
            ) {
                labels.insert(t, format!("tcp #{} {}", c.id, c.close));
            }
        }
    }
    for u in &traffic.udp {
        if let Some(p) = u.client_port {
            if let Ok(t) = Tuple::udp(
                SocketAddr::from((lab::A_ADDR, p)),
                SocketAddr::from((lab::B_ADDR, 5001)),
            ) {
                let kind = if u.long { "long" } else { "short" };
                labels.insert(t, format!("udp #{} {kind}", u.id));
            }
        }
    }
    let comparison = compare::compare(
        &kernel_flows,
        &table,
        &fwd_report.created,
        &labels,
        opts.tolerance,
    );
    let nft = kernel::nft_counters(&a)?;
    let mut devices = BTreeMap::new();
    devices.insert("A rwa", device_drops(&a, tun_a.name())?);
    devices.insert("B rwb", device_drops(&b, tun_b.name())?);
    let wall = started.elapsed();
    drop((tun_a, tun_b));
    Ok(report::Outcome {
        tcp_options,
        switches: format!(
            "nf_conntrack_tcp_loose={} nf_conntrack_tcp_be_liberal={} nf_conntrack_tcp_max_retrans={}",
            u8::from(config.tcp.loose),
            u8::from(config.tcp.be_liberal),
            config.tcp.max_retrans
        ),
        config_diffs,
        probe,
        traffic,
        undrained,
        forward: fwd_report,
        nft,
        devices,
        comparison,
        stats: table.stats(),
        observe: opts.observe,
        verbose: opts.verbose,
        wall,
    })
}

fn main() {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("traffic: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if opts.help {
        println!("{USAGE}");
        return;
    }
    let seed = opts.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        rng::derive(t.as_nanos() as u64, u64::from(std::process::id()))
    });
    println!(
        "traffic: seed {seed} (--seed {seed} repeats the payloads and loss pattern), {} TCP connections \
         ({} B up, {} B down), {} UDP flows, loss {:.2}%, GSO {}, refwatch-invalid packets {}",
        opts.conns,
        opts.request_bytes,
        opts.reply_bytes,
        opts.udp_flows,
        opts.loss * 100.0,
        if opts.no_gso { "off (gso_max_segs 1)" } else { "kernel default" },
        if opts.observe { "delivered (observe)" } else { "dropped" }
    );
    match run(&opts, seed) {
        Ok(outcome) => {
            let (passed, failed) = outcome.print(&opts.tolerance);
            println!("traffic: {passed} passed, {failed} failed");
            std::process::exit(if failed == 0 { 0 } else { 1 });
        }
        Err(Error::Unavailable(m)) if opts.skip_unavailable => {
            println!("traffic: skipped, cannot run here: {m}");
            println!("traffic: 0 passed, 0 failed, 1 skipped");
        }
        Err(Error::Unavailable(m)) => {
            eprintln!("traffic: cannot run here: {m} (--skip-unavailable exits 0 instead)");
            println!("traffic: 0 passed, 1 failed");
            std::process::exit(2);
        }
        Err(Error::Failed(m)) => {
            eprintln!("traffic: error: {m}");
            println!("traffic: 0 passed, 1 failed");
            std::process::exit(1);
        }
    }
}
