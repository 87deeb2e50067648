//! Builds and drops `n` `Counted` handles with a local registry in the given leak mode: the
//! loop of `refs`' `handle_create_destroy` bench, alone, for instruction counts.
//!
//! ```sh
//! cargo build --release -p refwatch-benches --example handle_create_destroy
//! valgrind --tool=callgrind target/release/examples/handle_create_destroy warn 100000
//! ```
//!
//! The cost of one create+destroy is the difference between two runs (say 100,000 and
//! 200,000 handles) divided by the difference in `n`: start-up cancels out.

use refwatch::handle::Counted;
use refwatch::leak::{LeakMode, Registry};
use refwatch::refs::{Refs, StickyRefs};
use refwatch::sync::Arc;
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode: LeakMode = args
        .next()
        .as_deref()
        .unwrap_or("warn")
        .parse()
        .expect("mode: off, warn or panic");
    let n: u64 = args
        .next()
        .map(|s| s.parse().expect("n: a number of handles"))
        .unwrap_or(100_000);
    let sticky = args.next().as_deref() == Some("sticky");
    let registry = Arc::new(Registry::new(mode));
    for _ in 0..n {
        if sticky {
            drop(black_box(
                Counted::<u64, StickyRefs<u64>>::builder(black_box(7))
                    .registry(&registry)
                    .build(),
            ));
        } else {
            drop(black_box(
                Counted::<u64, Refs<u64>>::builder(black_box(7))
                    .registry(&registry)
                    .build(),
            ));
        }
    }
    assert_eq!(registry.live_count(), 0, "every handle left the registry");
}
