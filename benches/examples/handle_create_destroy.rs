//! Builds and drops `n` `Counted` handles in the given leak mode: the loop of `refs`'
//! `handle_create_destroy` bench, alone, for instruction counts.
//!
//! Arguments: `[off|warn|panic] [n] [refs|sticky] [instance|global]` (defaults: `warn 100000
//! refs instance`): `instance` registers with a registry of the example's own, which each handle
//! keeps an `Arc` of; `global` uses the process-wide registry (`Counted::new`), with its mode
//! set to the given one.
//!
//! ```sh
//! cargo build --release -p refwatch-benches --example handle_create_destroy
//! valgrind --tool=callgrind target/release/examples/handle_create_destroy warn 100000
//! valgrind --tool=callgrind target/release/examples/handle_create_destroy warn 100000 refs global
//! ```
//!
//! The cost of one create+destroy is the difference between two runs (say 100,000 and
//! 200,000 handles) divided by the difference in `n`: start-up cancels out.

use refwatch::handle::Counted;
use refwatch::leak::{LeakMode, Registry};
use refwatch::refs::{RefCounter, Refs, StickyRefs};
use refwatch::sync::Arc;
use std::hint::black_box;

/// A handle counted by `C`, built and dropped: with `registry`, or (`None`) with the
/// process-wide registry, as `Counted::new` does.
#[inline(always)]
fn create_destroy<C: RefCounter + 'static>(registry: Option<&Arc<Registry>>) {
    let handle = match registry {
        Some(registry) => Counted::<u64, C>::builder(black_box(7))
            .registry(registry)
            .build(),
        None => Counted::<u64, C>::new(black_box(7)),
    };
    drop(black_box(handle));
}

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
    let global = args.next().as_deref() == Some("global");
    let registry = if global {
        let registry = Registry::global();
        registry.set_mode(mode);
        registry
    } else {
        Arc::new(Registry::new(mode))
    };
    let instance = (!global).then_some(&registry);
    for _ in 0..n {
        if sticky {
            create_destroy::<StickyRefs<u64>>(instance);
        } else {
            create_destroy::<Refs<u64>>(instance);
        }
    }
    assert_eq!(registry.live_count(), 0, "every handle left the registry");
}
