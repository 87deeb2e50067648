//! Replays a synthetic traffic mix through a connection-tracking table on the real clock,
//! with the reaper thread running, and prints what the table holds as time passes.
//!
//! ```text
//! cargo run --release --example conntrack_replay
//! ```
//!
//! The mix: 200 long-lived TCP connections that keep talking; every tick, a batch of short
//! TCP connections (handshake, request, close) and of UDP request/response pairs; and, from
//! 3 s to 6 s, a SYN flood from spoofed sources at many times the table's maximum. Timeouts
//! are Linux's, run 60 times faster (a minute lasts a second) so that reaping shows within
//! the run. Expect: the flood fills the table up to its maximum and no further, early drop
//! evicts the flood's unanswered SYNs (never the assured connections), and once the flood
//! stops the reaper brings the table back down.

use refwatch::conntrack::{
    Config, ConnTable, ConnTrack, Packet, ReaperConfig, TcpFlags as F, TcpSegment, Timeouts,
    TrackError,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(250);
const RUN: Duration = Duration::from_secs(10);
const FLOOD: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(6));
const LONG_LIVED: u16 = 200;
const SHORT_PER_TICK: u32 = 400;
const UDP_PER_TICK: u32 = 400;
const FLOOD_PER_TICK: u32 = 40_000;
const MAX: usize = 16_384;

/// Linux's timeouts, sixty times faster.
fn fast_timeouts() -> Timeouts {
    let linux = Timeouts::linux();
    let f = |d: Duration| d / 60;
    Timeouts {
        tcp_syn_sent: f(linux.tcp_syn_sent),
        tcp_syn_recv: f(linux.tcp_syn_recv),
        tcp_established: f(linux.tcp_established),
        tcp_fin_wait: f(linux.tcp_fin_wait),
        tcp_close_wait: f(linux.tcp_close_wait),
        tcp_last_ack: f(linux.tcp_last_ack),
        tcp_time_wait: f(linux.tcp_time_wait),
        tcp_close: f(linux.tcp_close),
        tcp_syn_sent2: f(linux.tcp_syn_sent2),
        tcp_retrans: f(linux.tcp_retrans),
        tcp_unacknowledged: f(linux.tcp_unacknowledged),
        udp_unreplied: f(linux.udp_unreplied),
        udp_replied: f(linux.udp_replied),
        udp_stream_after: f(linux.udp_stream_after),
        icmp: f(linux.icmp),
    }
}

fn tcp(from: SocketAddr, to: SocketAddr, flags: F, seq: u32, ack: u32) -> Packet {
    Packet::tcp(from, to, TcpSegment::new(flags, seq, ack)).expect("same address family")
}

/// One short TCP connection, start to finish (10 packets).
fn short_connection(ct: &ConnTable, c: SocketAddr, s: SocketAddr) -> Result<(), TrackError> {
    let (ci, si) = (1000, 9000);
    ct.track(&tcp(c, s, F::SYN, ci, 0))?;
    ct.track(&tcp(s, c, F::SYN | F::ACK, si, ci + 1))?;
    ct.track(&tcp(c, s, F::ACK, ci + 1, si + 1))?;
    let req = TcpSegment {
        payload_len: 100,
        ..TcpSegment::new(F::ACK | F::PSH, ci + 1, si + 1)
    };
    ct.track(&Packet::tcp(c, s, req).expect("same family"))?;
    let resp = TcpSegment {
        payload_len: 1000,
        ..TcpSegment::new(F::ACK | F::PSH, si + 1, ci + 101)
    };
    ct.track(&Packet::tcp(s, c, resp).expect("same family"))?;
    ct.track(&tcp(c, s, F::FIN | F::ACK, ci + 101, si + 1001))?;
    ct.track(&tcp(s, c, F::ACK, si + 1001, ci + 102))?;
    ct.track(&tcp(s, c, F::FIN | F::ACK, si + 1001, ci + 102))?;
    ct.track(&tcp(c, s, F::ACK, ci + 102, si + 1002))?;
    Ok(())
}

fn main() {
    let config = Config {
        // The bucket count follows: MAX / 4 = 4,096 buckets.
        max_connections: Some(MAX),
        timeouts: fast_timeouts(),
        reaper: ReaperConfig {
            // A full traversal at most every second (Linux-like pacing, 60 times faster).
            max_full_traversal: Duration::from_secs(1),
            ..ReaperConfig::default()
        },
        ..Config::default()
    };
    let ct = ConnTrack::new(config).expect("valid config");
    let server = |port| SocketAddr::from(([192, 0, 2, 1], port));

    // Long-lived connections: established now, talking every tick.
    let long: Vec<(SocketAddr, SocketAddr)> = (0..LONG_LIVED)
        .map(|i| {
            (
                SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 50000)),
                server(22),
            )
        })
        .collect();
    let mut long_seq = vec![(1u32, 1u32); long.len()];
    for &(c, s) in &long {
        ct.track(&tcp(c, s, F::SYN, 0, 0)).expect("room");
        ct.track(&tcp(s, c, F::SYN | F::ACK, 0, 1)).expect("room");
        ct.track(&tcp(c, s, F::ACK, 1, 1)).expect("room");
    }

    println!(
        "{:>5}  {:>6}  {:>8}  {:>7}  {:>8}  {:>8}  {:>7}  {:>9}  phase",
        "t(s)", "live", "created", "reaped", "dropped", "refused", "invalid", "long-ok"
    );
    let start = Instant::now();
    let (mut short_id, mut flood_id, mut tick) = (0u32, 0u32, 0u32);
    while start.elapsed() < RUN {
        let t = start.elapsed();
        let flooding = t >= FLOOD.0 && t < FLOOD.1;

        // Long-lived: 10 bytes each way per tick.
        let mut long_ok = 0;
        for (k, &(c, s)) in long.iter().enumerate() {
            let (cs, ss) = &mut long_seq[k];
            let a = TcpSegment {
                payload_len: 10,
                ..TcpSegment::new(F::ACK, *cs, *ss)
            };
            let b = TcpSegment {
                payload_len: 10,
                ..TcpSegment::new(F::ACK, *ss, *cs + 10)
            };
            let ok = ct.track(&Packet::tcp(c, s, a).expect("family")).is_ok()
                && ct
                    .track(&Packet::tcp(s, c, b).expect("family"))
                    .map(|t| t.assured)
                    .unwrap_or(false);
            (*cs, *ss) = (*cs + 10, *ss + 10);
            long_ok += usize::from(ok);
        }

        // Short TCP connections and UDP exchanges from many clients.
        for _ in 0..SHORT_PER_TICK {
            short_id += 1;
            let c = SocketAddr::from((
                [10, 2, (short_id >> 8) as u8, short_id as u8],
                1024 + (short_id % 60000) as u16,
            ));
            let _ = short_connection(&ct, c, server(443));
        }
        for k in 0..UDP_PER_TICK {
            let c = SocketAddr::from((
                [10, 3, (k >> 8) as u8, k as u8],
                2000 + (tick % 1000) as u16,
            ));
            let _ = ct.track(&Packet::udp(c, server(53)).expect("family"));
            let _ = ct.track(&Packet::udp(server(53), c).expect("family"));
        }

        // The flood: SYNs from spoofed sources that never answer.
        if flooding {
            for _ in 0..FLOOD_PER_TICK {
                flood_id = flood_id.wrapping_add(1);
                let src = SocketAddr::from((
                    [
                        172,
                        16 + (flood_id >> 24) as u8 % 16,
                        (flood_id >> 16) as u8,
                        (flood_id >> 8) as u8,
                    ],
                    flood_id as u16 | 1024,
                ));
                let _ = ct.track(&tcp(src, server(80), F::SYN, flood_id, 0));
            }
        }

        let s = ct.stats();
        assert!(s.live <= MAX, "the table outgrew its maximum");
        println!(
            "{:>5.2}  {:>6}  {:>8}  {:>7}  {:>8}  {:>8}  {:>7}  {:>5}/{:<3}  {}",
            t.as_secs_f64(),
            s.live,
            s.created,
            s.reaped,
            s.early_dropped,
            s.refused,
            s.invalid,
            long_ok,
            LONG_LIVED,
            if flooding { "SYN flood" } else { "" }
        );
        tick += 1;
        let next = TICK * tick;
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let s = ct.stats();
    println!(
        "\nend: {} live, {} created, {} reaped, {} early-dropped, {} refused, {} invalid; reaper passes: {}",
        s.live,
        s.created,
        s.reaped,
        s.early_dropped,
        s.refused,
        s.invalid,
        ct.reaper().passes()
    );
    drop(ct); // stops and joins the reaper
}
