//! refwatch's configuration mirrored from A's conntrack sysctls, so that both trackers run
//! with the same switches and timeouts; and where refwatch's own defaults differ from them.

use crate::error::{failed, Context, Result};
use crate::netns::Netns;
use refwatch::conntrack::{Config, TcpConfig, Timeouts};
use std::time::Duration;

fn read_num(ns: &Netns, knob: &str) -> Result<u64> {
    let path = format!("/proc/sys/net/netfilter/{knob}");
    let text = ns.read(&path)?;
    text.trim()
        .parse()
        .with_context(|| format!("parsing {path} ({:?})", text.trim()))
}

/// The configuration A's kernel runs with, and a line for each value in which refwatch's
/// defaults ([`Config::default`]) differ from it.
pub fn from_kernel(a: &Netns) -> Result<(Config, Vec<String>)> {
    let defaults = Config::default();
    let mut diffs = Vec::new();
    let flag = |knob: &str| -> Result<bool> {
        match read_num(a, knob)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(failed(format!("{knob} is {v}, expected 0 or 1"))),
        }
    };
    let tcp = TcpConfig {
        loose: flag("nf_conntrack_tcp_loose")?,
        be_liberal: flag("nf_conntrack_tcp_be_liberal")?,
        max_retrans: u8::try_from(read_num(a, "nf_conntrack_tcp_max_retrans")?)
            .context("nf_conntrack_tcp_max_retrans")?,
    };
    for (name, k, r) in [
        (
            "nf_conntrack_tcp_loose",
            u64::from(tcp.loose),
            u64::from(defaults.tcp.loose),
        ),
        (
            "nf_conntrack_tcp_be_liberal",
            u64::from(tcp.be_liberal),
            u64::from(defaults.tcp.be_liberal),
        ),
        (
            "nf_conntrack_tcp_max_retrans",
            u64::from(tcp.max_retrans),
            u64::from(defaults.tcp.max_retrans),
        ),
    ] {
        if k != r {
            diffs.push(format!(
                "{name}: A's kernel {k}, refwatch's default {r} (refwatch runs with {k})"
            ));
        }
    }
    let mut t: Timeouts = defaults.timeouts;
    let fields: [(&str, &mut Duration); 14] = [
        ("nf_conntrack_tcp_timeout_syn_sent", &mut t.tcp_syn_sent),
        ("nf_conntrack_tcp_timeout_syn_recv", &mut t.tcp_syn_recv),
        (
            "nf_conntrack_tcp_timeout_established",
            &mut t.tcp_established,
        ),
        ("nf_conntrack_tcp_timeout_fin_wait", &mut t.tcp_fin_wait),
        ("nf_conntrack_tcp_timeout_close_wait", &mut t.tcp_close_wait),
        ("nf_conntrack_tcp_timeout_last_ack", &mut t.tcp_last_ack),
        ("nf_conntrack_tcp_timeout_time_wait", &mut t.tcp_time_wait),
        ("nf_conntrack_tcp_timeout_close", &mut t.tcp_close),
        ("nf_conntrack_tcp_timeout_max_retrans", &mut t.tcp_retrans),
        (
            "nf_conntrack_tcp_timeout_unacknowledged",
            &mut t.tcp_unacknowledged,
        ),
        ("nf_conntrack_udp_timeout", &mut t.udp_unreplied),
        ("nf_conntrack_udp_timeout_stream", &mut t.udp_replied),
        ("nf_conntrack_icmp_timeout", &mut t.icmp),
        // The kernel has no knob for the 2-second UDP stream mark; keep refwatch's value.
        ("", &mut t.udp_stream_after),
    ];
    for (knob, slot) in fields {
        if knob.is_empty() {
            continue;
        }
        let k = Duration::from_secs(read_num(a, knob)?);
        if k != *slot {
            diffs.push(format!(
                "{knob}: A's kernel {}s, refwatch's default {}s (refwatch runs with {}s)",
                k.as_secs(),
                slot.as_secs(),
                k.as_secs()
            ));
        }
        *slot = k;
    }
    Ok((
        Config {
            tcp,
            timeouts: t,
            ..defaults
        },
        diffs,
    ))
}
