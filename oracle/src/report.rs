//! Aggregating results: agreement per field, disagreement patterns with minimal examples,
//! departures matched and stale, and the text and JSON renderings.

use crate::compare::{Field, Observation, PatternKey};
use crate::departures::Departure;
use crate::kernel::SyncStats;
use crate::notation::Step;
use crate::sequence::{Origin, PacketResult, SeqResult};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Agreement counts for one group of packets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Packets.
    pub packets: u64,
    /// Per field: packets where it was compared.
    pub compared: [u64; 5],
    /// Per field: packets where it agreed.
    pub agreed: [u64; 5],
    /// Packets where state, verdict, assured and timeout agreed (as far as compared).
    pub all4: u64,
    /// Packets where every compared field agreed.
    pub all: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.packets += other.packets;
        self.all += other.all;
        self.all4 += other.all4;
        for i in 0..5 {
            self.compared[i] += other.compared[i];
            self.agreed[i] += other.agreed[i];
        }
    }
}

/// A shortest sequence showing a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// Where the sequence came from.
    pub origin: Origin,
    /// The steps up to and including the disagreeing packet.
    pub steps: Vec<Step>,
    /// How many steps the sequence had up to that packet before it was minimized.
    pub minimized_from: Option<usize>,
    /// What the kernel and refwatch said about that packet.
    pub kernel: Observation,
    /// refwatch's observation.
    pub refwatch: Observation,
}

impl Example {
    /// The steps in notation, the disagreeing (last) one marked with `>>`.
    pub fn notation(&self) -> String {
        let n = self.steps.len();
        let parts: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i + 1 == n {
                    format!(">> {s}")
                } else {
                    s.to_string()
                }
            })
            .collect();
        parts.join("; ")
    }
}

/// One disagreement pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternStat {
    /// Packets showing it.
    pub count: u64,
    /// Sequences where it is the first disagreement on its field (the rest may follow from
    /// an earlier one).
    pub first: u64,
    /// The shortest example.
    pub example: Example,
}

/// Everything a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Tallies by (origin kind, protocol).
    pub tallies: BTreeMap<(String, String), Tally>,
    /// Patterns.
    pub patterns: BTreeMap<PatternKey, PatternStat>,
    /// Sequences run, by origin kind.
    pub sequences: BTreeMap<String, u64>,
    /// TCP sequences, and those in which the kernel reached ESTABLISHED.
    pub tcp_sequences: u64,
    /// See [`Report::tcp_sequences`].
    pub tcp_established: u64,
    /// What the kernel did with packets of existing connections, by (protocol, flag class,
    /// kernel state before): `[refreshed, ignored, invalid]` counts.
    pub kernel_outcomes: BTreeMap<(String, String, String), [u64; 3]>,
}

/// A pattern with its departure row, if one covers it.
#[derive(Debug)]
pub struct Judged<'a> {
    /// The pattern.
    pub key: &'a PatternKey,
    /// Its statistics.
    pub stat: &'a PatternStat,
    /// The first departure row covering it.
    pub departure: Option<&'a Departure>,
}

fn pct(n: u64, d: u64) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / d as f64)
    }
}

/// One observation in words: `accepted ESTABLISHED assured 432000s`.
pub fn describe(o: &Observation) -> String {
    let v = match (o.accepted, o.refreshed) {
        (false, _) => "invalid",
        (true, Some(false)) => "accepted (ignored)",
        (true, _) => "accepted",
    };
    match &o.conn {
        None => format!("{v}, no connection"),
        Some(c) => format!(
            "{v}, {}{}{} {}s",
            c.state,
            if c.from_server { " (opened by R)" } else { "" },
            if c.assured { " assured" } else { "" },
            c.timeout
        ),
    }
}

/// The pattern keys of a packet's disagreements, in the order of its mismatches.
pub fn keys_of(step: &Step, p: &PacketResult) -> Vec<PatternKey> {
    p.cmp
        .mismatches
        .iter()
        .map(|m| PatternKey {
            field: m.field.name().into(),
            proto: step.proto().into(),
            dir: step.dir().map(|d| d.to_string()).unwrap_or_default(),
            flags: step.class(),
            before: p.before.clone(),
            kernel: m.kernel.clone(),
            refwatch: m.refwatch.clone(),
        })
        .collect()
}

impl Report {
    /// Folds in one sequence's results.
    pub fn add(&mut self, r: &SeqResult) {
        let kind = r.input.origin.kind().to_string();
        *self.sequences.entry(kind.clone()).or_default() += 1;
        if matches!(r.input.steps.first(), Some(Step::Tcp(_))) {
            self.tcp_sequences += 1;
            if r.packets.iter().any(|p| {
                p.kernel
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.state == "ESTABLISHED")
            }) {
                self.tcp_established += 1;
            }
        }
        let mut first_seen = [false; 5];
        for p in &r.packets {
            let step = &r.input.steps[p.step];
            if let Some(refreshed) = p.kernel.refreshed {
                let o = self
                    .kernel_outcomes
                    .entry((step.proto().into(), step.class(), p.before.clone()))
                    .or_default();
                o[usize::from(!refreshed)] += 1;
            } else if !p.kernel.accepted && p.before != "NONE" {
                let o = self
                    .kernel_outcomes
                    .entry((step.proto().into(), step.class(), p.before.clone()))
                    .or_default();
                o[2] += 1;
            }
            let t = self
                .tallies
                .entry((kind.clone(), step.proto().to_string()))
                .or_default();
            t.packets += 1;
            if p.cmp.mismatches.is_empty() {
                t.all += 1;
            }
            if p.cmp.mismatches.iter().all(|m| m.field == Field::Refresh) {
                t.all4 += 1;
            }
            for f in Field::ALL {
                if p.cmp.compared[f.index()] {
                    t.compared[f.index()] += 1;
                    if !p.cmp.mismatches.iter().any(|m| m.field == f) {
                        t.agreed[f.index()] += 1;
                    }
                }
            }
            for (m, key) in p.cmp.mismatches.iter().zip(keys_of(step, p)) {
                let first = !std::mem::replace(&mut first_seen[m.field.index()], true);
                let example = || Example {
                    origin: r.input.origin.clone(),
                    steps: r.input.steps[..=p.step].to_vec(),
                    minimized_from: None,
                    kernel: p.kernel.clone(),
                    refwatch: p.refwatch.clone(),
                };
                let stat = self.patterns.entry(key).or_insert_with(|| PatternStat {
                    count: 0,
                    first: 0,
                    example: example(),
                });
                stat.count += 1;
                stat.first += u64::from(first);
                if p.step + 1 < stat.example.steps.len() {
                    stat.example = example();
                }
            }
        }
    }

    /// Packets agreeing on every field, and the others.
    pub fn passed_failed(&self) -> (u64, u64) {
        let mut t = Tally::default();
        for v in self.tallies.values() {
            t.add(v);
        }
        (t.all, t.packets - t.all)
    }

    /// Patterns by count (descending), each with the departure covering it.
    pub fn judged<'a>(&'a self, departures: &'a [Departure]) -> Vec<Judged<'a>> {
        let mut v: Vec<Judged<'a>> = self
            .patterns
            .iter()
            .map(|(key, stat)| Judged {
                key,
                stat,
                departure: departures.iter().find(|d| d.matches(key)),
            })
            .collect();
        v.sort_by(|a, b| b.stat.count.cmp(&a.stat.count).then(a.key.cmp(b.key)));
        v
    }

    /// Departure rows that matched no pattern this run.
    pub fn stale<'a>(&self, departures: &'a [Departure]) -> Vec<&'a Departure> {
        departures
            .iter()
            .filter(|d| !self.patterns.keys().any(|k| d.matches(k)))
            .collect()
    }

    /// The agreement table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9}",
            "agreement",
            "packets",
            "state",
            "verdict",
            "assured",
            "timeout",
            "all four",
            "refresh",
            "all five"
        );
        let mut total = Tally::default();
        let mut by_kind: BTreeMap<String, Tally> = BTreeMap::new();
        let row = |s: &mut String, name: &str, t: &Tally| {
            let f = |i: usize| pct(t.agreed[i], t.compared[i]);
            let _ = writeln!(
                s,
                "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9}",
                name,
                t.packets,
                f(0),
                f(1),
                f(2),
                f(3),
                pct(t.all4, t.packets),
                f(4),
                pct(t.all, t.packets)
            );
        };
        for ((kind, proto), t) in &self.tallies {
            row(&mut s, &format!("{kind} {proto}"), t);
            total.add(t);
            by_kind.entry(kind.clone()).or_default().add(t);
        }
        for (kind, t) in &by_kind {
            row(&mut s, &format!("{kind} all"), t);
        }
        row(&mut s, "total", &total);
        let _ = writeln!(
            s,
            "(assured and timeout are compared when both sides have a connection ({} packets); a \
             timeout agrees when refwatch's t and the kernel's r have t-2 <= r <= t; refresh \
             (refreshed the timeout, or was ignored) is compared for accepted packets of existing \
             connections ({} packets))",
            total.compared[2], total.compared[4]
        );
        s
    }

    /// The kernel's ignored packets: accepted without refreshing the timeout, by packet class
    /// and state, most frequent first (at most `limit` lines).
    pub fn kernel_ignored_text(&self, limit: usize) -> String {
        let mut v: Vec<_> = self
            .kernel_outcomes
            .iter()
            .filter(|(_, c)| c[1] > 0)
            .collect();
        v.sort_by(|a, b| b.1[1].cmp(&a.1[1]).then(a.0.cmp(b.0)));
        let mut s = format!(
            "Linux's ignored packets (accepted, timeout not refreshed; refreshed/ignored/invalid \
             counts of that class in that state), {} classes:\n",
            v.len()
        );
        for ((proto, class, before), c) in v.iter().take(limit) {
            let _ = writeln!(
                s,
                "  {proto} {class:<8} in {before:<14} ignored {:>6}  refreshed {:>6}  invalid {:>6}",
                c[1], c[0], c[2]
            );
        }
        s
    }

    /// The patterns, with examples, marking those no departure covers.
    pub fn patterns_text(&self, departures: &[Departure], limit: Option<usize>) -> String {
        let judged = self.judged(departures);
        let mut s = String::new();
        let unlisted = judged.iter().filter(|j| j.departure.is_none()).count();
        let _ = writeln!(
            s,
            "disagreement patterns: {} distinct, {} not in DEPARTURES.md (count = packets; first = \
             sequences where it is the first disagreement on its field)",
            judged.len(),
            unlisted
        );
        for (i, j) in judged.iter().enumerate() {
            if limit.is_some_and(|l| i >= l) {
                let _ = writeln!(s, "  … {} more (without --top)", judged.len() - i);
                break;
            }
            let mark = match j.departure {
                Some(d) => format!("listed (DEPARTURES.md line {})", d.line),
                None => "NOT LISTED".into(),
            };
            let _ = writeln!(
                s,
                "{:>3}. [{mark}] {}\n     count {} first {}\n     example ({}): {}\n     kernel: {}\n     refwatch: {}",
                i + 1,
                j.key,
                j.stat.count,
                j.stat.first,
                match j.stat.example.minimized_from {
                    Some(n) => format!(
                        "{}, minimized from {n} steps",
                        j.stat.example.origin
                    ),
                    None => j.stat.example.origin.to_string(),
                },
                j.stat.example.notation(),
                describe(&j.stat.example.kernel),
                describe(&j.stat.example.refwatch),
            );
        }
        s
    }

    /// The JSON rendering.
    pub fn to_json(&self, departures: &[Departure], sync: &SyncStats, seed: u64) -> String {
        let mut s = String::from("{");
        let _ = write!(s, "\"seed\":{seed},\"sequences\":{{");
        let seqs: Vec<String> = self
            .sequences
            .iter()
            .map(|(k, v)| format!("{}:{v}", json_str(k)))
            .collect();
        s.push_str(&seqs.join(","));
        let _ = write!(
            s,
            "}},\"tcp_sequences\":{},\"tcp_established\":{},",
            self.tcp_sequences, self.tcp_established
        );
        let _ = write!(
            s,
            "\"barrier\":{{\"packets\":{},\"forwarded\":{},\"late\":{},\"strays\":{}}},",
            sync.packets, sync.forwarded, sync.late, sync.strays
        );
        s.push_str("\"agreement\":[");
        let rows: Vec<String> = self
            .tallies
            .iter()
            .map(|((kind, proto), t)| {
                let fields: Vec<String> = Field::ALL
                    .iter()
                    .map(|f| {
                        format!(
                            "{}:{{\"compared\":{},\"agreed\":{}}}",
                            json_str(f.name()),
                            t.compared[f.index()],
                            t.agreed[f.index()]
                        )
                    })
                    .collect();
                format!(
                    "{{\"origin\":{},\"proto\":{},\"packets\":{},\"all_four\":{},\"all\":{},{}}}",
                    json_str(kind),
                    json_str(proto),
                    t.packets,
                    t.all4,
                    t.all,
                    fields.join(",")
                )
            })
            .collect();
        s.push_str(&rows.join(","));
        s.push_str("],\"patterns\":[");
        let pats: Vec<String> = self
            .judged(departures)
            .iter()
            .map(|j| {
                format!(
                    "{{\"key\":{},\"count\":{},\"first\":{},\"listed\":{},\"example\":{},\"origin\":{},\"kernel\":{},\"refwatch\":{}}}",
                    json_str(&j.key.to_string()),
                    j.stat.count,
                    j.stat.first,
                    j.departure.is_some(),
                    json_str(&j.stat.example.notation()),
                    json_str(&j.stat.example.origin.to_string()),
                    json_str(&describe(&j.stat.example.kernel)),
                    json_str(&describe(&j.stat.example.refwatch)),
                )
            })
            .collect();
        s.push_str(&pats.join(","));
        s.push_str("],\"stale_departures\":[");
        let stale: Vec<String> = self
            .stale(departures)
            .iter()
            .map(|d| json_str(&d.pattern))
            .collect();
        s.push_str(&stale.join(","));
        let (p, f) = self.passed_failed();
        let _ = write!(s, "],\"passed\":{p},\"failed\":{f}}}");
        s
    }
}

/// `text` as a JSON string literal.
pub fn json_str(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use crate::compare::{compare, ConnView};
    use crate::notation::parse_steps;
    use crate::sequence::{PacketResult, SeqInput};

    fn obs(state: &str, t: u64) -> Observation {
        Observation {
            accepted: true,
            conn: Some(ConnView {
                state: state.into(),
                from_server: false,
                assured: false,
                timeout: t,
            }),
            refreshed: None,
        }
    }

    fn result(text: &str, pairs: &[(&str, &str)]) -> SeqResult {
        let steps = parse_steps(text).unwrap();
        let mut before = "NONE".to_string();
        let packets = pairs
            .iter()
            .enumerate()
            .map(|(i, (k, r))| {
                let (k, r) = (obs(k, 120), obs(r, 120));
                let p = PacketResult {
                    step: i,
                    before: before.clone(),
                    cmp: compare(&k, &r),
                    kernel: k.clone(),
                    refwatch: r,
                };
                before = k.state_value();
                p
            })
            .collect();
        SeqResult {
            input: SeqInput {
                origin: Origin::Adhoc,
                steps,
            },
            packets,
        }
    }

    #[test]
    fn patterns_keep_the_shortest_example_and_count_firsts() {
        let mut rep = Report::default();
        rep.add(&result(
            "O S 1; O S 1; O S 1",
            &[("SYN_SENT", "SYN_SENT"), ("A", "B"), ("A", "B")],
        ));
        rep.add(&result(
            "O S 1; O S 1",
            &[("SYN_SENT", "SYN_SENT"), ("A", "B")],
        ));
        assert_eq!(rep.patterns.len(), 2, "{:?}", rep.patterns.keys());
        let (key, stat) = rep
            .patterns
            .iter()
            .find(|(k, _)| k.before == "SYN_SENT")
            .unwrap();
        assert_eq!(
            key.to_string(),
            "field=state proto=tcp dir=O flags=S before=SYN_SENT kernel=A refwatch=B"
        );
        assert_eq!((stat.count, stat.first), (2, 2));
        assert_eq!(stat.example.steps.len(), 2);
        assert_eq!(stat.example.notation(), "O S 1; >> O S 1");
        assert_eq!(rep.passed_failed(), (2, 3));
        let t = rep.table();
        assert!(t.contains("adhoc tcp"), "{t}");
    }

    #[test]
    fn stale_and_listed() {
        let mut rep = Report::default();
        rep.add(&result("O S 1", &[("A", "B")]));
        let deps = crate::departures::parse(
            "| pattern | reason |\n|-|-|\n| `field=state kernel=A` | r |\n| `field=timeout` | r |\n",
        )
        .unwrap();
        let j = rep.judged(&deps);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].departure.map(|d| d.line), Some(3));
        let stale = rep.stale(&deps);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].pattern, "field=timeout");
        let json = rep.to_json(&deps, &SyncStats::default(), 5);
        assert!(json.starts_with("{\"seed\":5"), "{json}");
        assert!(
            json.contains("\"stale_departures\":[\"field=timeout\"]"),
            "{json}"
        );
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
