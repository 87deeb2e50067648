//! The report: what the traffic did, what the forwarder dropped and why, what the kernel
//! counted, and the per-flow comparison; and the pass/fail tally.

use crate::compare::{Comparison, FlowResult};
use crate::forwarder::{DirStats, ForwardReport};
use crate::traffic::TrafficReport;
use refwatch::conntrack::Stats;
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything a run found.
#[derive(Debug)]
pub struct Outcome {
    /// TCP option sysctls of both namespaces.
    pub tcp_options: Vec<String>,
    /// A's conntrack switches, which refwatch mirrors.
    pub switches: String,
    /// Where refwatch's default configuration differs from A's kernel.
    pub config_diffs: Vec<String>,
    /// The self-check of the per-packet join.
    pub probe: crate::probe::ProbeResult,
    /// The traffic's results.
    pub traffic: TrafficReport,
    /// What was still moving when the drain wait gave up (`None`: drained).
    pub undrained: Option<String>,
    /// The forwarder's counters and per-flow logs.
    pub forward: ForwardReport,
    /// A's nftables counters by rule comment: (packets, bytes).
    pub nft: BTreeMap<String, (u64, u64)>,
    /// Device drop counters: (rx_drop, tx_drop).
    pub devices: BTreeMap<&'static str, (u64, u64)>,
    /// The per-flow comparison.
    pub comparison: Comparison,
    /// refwatch's table counters.
    pub stats: Stats,
    /// Whether refwatch-invalid packets were delivered (marked) rather than dropped.
    pub observe: bool,
    /// Print every flow, not only the disagreeing ones.
    pub verbose: bool,
    /// From the first connection to the end of the comparison.
    pub wall: Duration,
}

fn reasons(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(r, n)| format!("{n} × {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn dir_line(name: &str, d: &DirStats) {
    println!(
        "  {name}: read {}, forwarded {} ({} bytes), lost (simulated) {}, invalid {}, table full {}, \
         largest packet {} bytes",
        d.read,
        d.forwarded,
        d.bytes,
        d.lost,
        d.invalid_total(),
        d.table_full,
        d.largest
    );
    println!("    invalid by reason: {}", reasons(&d.invalid));
    if !d.untracked.is_empty() {
        println!("    forwarded untracked: {}", reasons(&d.untracked));
    }
    if !d.write_errors.is_empty() {
        println!("    write errors: {}", reasons(&d.write_errors));
    }
}

impl Outcome {
    fn nft(&self, key: &str) -> u64 {
        self.nft.get(key).map(|c| c.0).unwrap_or(0)
    }

    fn print_flow(&self, f: &FlowResult) {
        println!("  {} [{}]", f.tuple, f.label);
        match &f.kernel {
            Some(k) => println!("    kernel:   {k}"),
            None => println!("    kernel:   (no entry)"),
        }
        match &f.refwatch {
            Some(r) => println!("    refwatch: {r}"),
            None => println!("    refwatch: (no live entry)"),
        }
        for d in &f.diffs {
            println!("    differs: {d}");
        }
        if let Some(t) = &f.tolerated {
            println!("    tolerated: {t}");
        }
        if let Some(l) = &f.kernel_line {
            println!(
                "    kernel line: {}",
                l.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        if let Some(log) = self.forward.flows.get(&f.tuple) {
            println!(
                "    refwatch saw {} packets of this flow, called {} invalid",
                log.packets, log.invalid
            );
            if !log.first_invalid.is_empty() {
                println!("    first packets refwatch called invalid:");
                for n in &log.first_invalid {
                    println!("      {n}");
                }
            }
            println!("    last {} packets:", log.recent.len());
            for n in &log.recent {
                println!("      {n}");
            }
        }
    }

    /// Prints the report; returns (checks passed, checks failed).
    pub fn print(&self, tolerance: &Duration) -> (usize, usize) {
        let (mut passed, mut failed) = (0, 0);
        let mut check = |ok: bool| {
            if ok {
                passed += 1
            } else {
                failed += 1
            }
        };
        let t = &self.traffic;

        println!("== namespaces");
        for l in &self.tcp_options {
            println!("  {l}");
        }
        println!(
            "  A's conntrack: {}; refwatch runs with the same switches and timeouts",
            self.switches
        );
        for d in &self.config_diffs {
            println!("  refwatch default differs: {d}");
        }

        let p = &self.probe;
        let probe_ok = p.kernel_invalid && p.refwatch.is_err();
        check(probe_ok);
        println!(
            "  {}self-check, a stray ACK from A: kernel {} (mark {}); refwatch {}",
            if probe_ok { "" } else { "FAILED " },
            if p.kernel_invalid { "invalid" } else { "valid" },
            if p.kernel_invalid {
                "seen by the forwarder: the per-packet join works"
            } else {
                "not seen"
            },
            match &p.refwatch {
                Ok(s) => format!("valid ({s})"),
                Err(e) => format!("invalid ({e})"),
            }
        );

        println!("== traffic");
        let done = t.tcp.iter().filter(|c| c.ok()).count();
        let bytes: u64 = t.tcp.iter().map(|c| c.bytes_checked()).sum();
        println!(
            "  TCP connections completed with data intact: {done} / {} attempted; {bytes} bytes checked; traffic took {:.1}s",
            t.tcp.len(),
            t.elapsed.as_secs_f64()
        );
        for c in &t.tcp {
            check(c.ok());
            if !c.ok() {
                println!(
                    "  FAILED tcp #{} {} (client port {}): client: {}; server: {}",
                    c.id,
                    c.close,
                    c.client_port
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into()),
                    match &c.client {
                        Ok(n) => format!("ok, {n} bytes checked"),
                        Err(e) => e.clone(),
                    },
                    match &c.server {
                        Some(Ok(n)) => format!("ok, {n} bytes checked"),
                        Some(Err(e)) => e.clone(),
                        None => "never saw the connection".into(),
                    }
                );
            }
        }
        let udp_ok = t.udp.iter().filter(|u| u.result.is_ok()).count();
        let exchanges: u32 = t.udp.iter().map(|u| u.exchanges).sum();
        let retries: u32 = t.udp.iter().map(|u| u.retries).sum();
        println!(
            "  UDP flows completed: {udp_ok} / {}; {exchanges} exchanges, {retries} requests resent, {} datagrams served",
            t.udp.len(),
            t.udp_served
        );
        for u in &t.udp {
            check(u.result.is_ok());
            if let Err(e) = &u.result {
                println!("  FAILED udp #{}: {e}", u.id);
            }
        }
        check(self.undrained.is_none());
        match &self.undrained {
            None => println!("  drained: every socket closed (or in TIME_WAIT), forwarder quiet"),
            Some(left) => println!("  FAILED to drain: {left}"),
        }

        println!("== forwarder (refwatch inline)");
        let f = &self.forward;
        dir_line("A->B", &f.a_to_b);
        dir_line("B->A", &f.b_to_a);
        if !f.read_errors.is_empty() {
            println!("  read errors: {}", reasons(&f.read_errors));
        }
        println!(
            "  refwatch table: {} connections created, {} live, {} packets invalid (the self-check's included)",
            self.stats.created, self.stats.live, self.stats.invalid
        );

        println!("== kernel conntrack in A (nftables counters; counted, never dropped)");
        let (out_all, in_all) = (self.nft("out-all"), self.nft("in-all"));
        let (out_inv, in_inv) = (self.nft("out-invalid"), self.nft("in-invalid"));
        println!(
            "  output hook: {out_all} packets, {out_inv} invalid (tcp {}, udp {})",
            self.nft("out-invalid-tcp"),
            self.nft("out-invalid-udp")
        );
        println!(
            "  input hook:  {in_all} packets, {in_inv} invalid (tcp {}, udp {})",
            self.nft("in-invalid-tcp"),
            self.nft("in-invalid-udp")
        );
        for (dev, (rx, tx)) in &self.devices {
            println!("  device {dev}: rx_drop {rx}, tx_drop {tx}");
        }
        if out_all < f.a_to_b.read {
            println!(
                "  GSO: A's output hook saw {out_all} packets where the forwarder read {} segments from A's device \
                 ({} more): the kernel's conntrack judges GSO packets before segmentation (--no-gso avoids it)",
                f.a_to_b.read,
                f.a_to_b.read - out_all
            );
        } else {
            println!(
                "  GSO: A's output hook saw {out_all} packets, the forwarder read {} from A's device: no GSO super-packets",
                f.a_to_b.read
            );
        }
        let ref_a_b = f.a_to_b.invalid_total();
        let ref_b_a = f.b_to_a.invalid_total();
        println!(
            "  invalid totals: refwatch {} (A->B {ref_a_b}, B->A {ref_b_a}), kernel {} (output {out_inv}, input {in_inv})",
            ref_a_b + ref_b_a,
            out_inv + in_inv
        );
        let invalid_ok = ref_a_b + ref_b_a <= out_inv + in_inv;
        check(invalid_ok);
        if !invalid_ok {
            println!("  FAILED: refwatch called more packets invalid than the kernel did");
        }
        let [[both_valid, only_ref], [only_kernel, both_invalid]] = f.a_to_b.join;
        println!(
            "  A->B per packet (kernel verdict from the DSCP mark A's output chain sets; the kernel judged \
             GSO packets, refwatch their segments): both valid {both_valid}, both invalid {both_invalid}, \
             only the kernel invalid {only_kernel}, only refwatch invalid {only_ref}"
        );
        check(only_ref == 0);
        if only_ref > 0 {
            println!("  FAILED: refwatch called {only_ref} A->B packets invalid that the kernel called valid");
        }
        if self.observe {
            let marked = self.nft("in-refwatch-invalid");
            let agreed = self.nft("in-refwatch-invalid-kernel-invalid");
            println!(
                "  B->A per packet (observe mode: refwatch-invalid packets delivered marked): refwatch invalid \
                 {ref_b_a}, reached A's input hook {marked}, of which the kernel called invalid {agreed}, valid {}",
                marked - agreed.min(marked)
            );
            check(marked == agreed);
            if marked != agreed {
                println!(
                    "  FAILED: refwatch called {} B->A packets invalid that the kernel called valid",
                    marked - agreed.min(marked)
                );
            }
        } else if ref_b_a > 0 {
            println!(
                "  B->A: refwatch dropped {ref_b_a} packets before A's input hook, so the kernel never judged them \
                 (--observe delivers them marked, for the kernel to judge)"
            );
        }

        println!(
            "== per-flow comparison (tolerance {}s)",
            tolerance.as_secs()
        );
        let c = &self.comparison;
        let agreeing = c.flows.iter().filter(|f| f.agrees()).count();
        let tolerated = c
            .flows
            .iter()
            .filter(|f| !f.diffs.is_empty() && f.tolerated.is_some())
            .count();
        let kernel_flows = c.flows.iter().filter(|f| f.kernel.is_some()).count();
        println!(
            "  flows compared: {} ({kernel_flows} listed by the kernel, {} by refwatch only); agreeing {agreeing} \
             ({tolerated} only through an entry expiring at the boundary); disagreeing {}",
            c.flows.len(),
            c.flows.len() - kernel_flows,
            c.flows.len() - agreeing
        );
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for fl in c.disagreements() {
            for d in &fl.diffs {
                let kind = d.split(':').next().unwrap_or(d).to_string();
                *by_kind.entry(kind).or_default() += 1;
            }
        }
        if !by_kind.is_empty() {
            println!(
                "  disagreements by kind: {}",
                by_kind
                    .iter()
                    .map(|(k, n)| format!("{n} × {k}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        for l in &c.other_kernel {
            println!("  (kernel entry not compared: {l})");
        }
        for fl in &c.flows {
            check(fl.agrees());
        }
        for fl in c.disagreements() {
            println!("  DISAGREES:");
            self.print_flow(fl);
        }
        if self.verbose {
            for fl in c.flows.iter().filter(|fl| fl.agrees()) {
                println!(
                    "  agrees: {} [{}]: kernel {}; refwatch {}",
                    fl.tuple,
                    fl.label,
                    fl.kernel
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into()),
                    fl.refwatch
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        let invalid_agreeing: Vec<&FlowResult> = c
            .flows
            .iter()
            .filter(|fl| fl.agrees() && f.flows.get(&fl.tuple).is_some_and(|l| l.invalid > 0))
            .collect();
        for fl in invalid_agreeing {
            println!("  agrees in the end, but refwatch called packets of it invalid:");
            self.print_flow(fl);
        }
        println!("== wall time {:.1}s", self.wall.as_secs_f64());
        (passed, failed)
    }
}
