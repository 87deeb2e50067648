//! `REFWATCH_LEAK_CHECK` sets the global registry's mode; an unknown value is an error.
//!
//! One test in its own binary: it is the only code in this process that touches the variable.
#![cfg(not(any(loom, shuttle)))]

use refwatch::handle::Counted;
use refwatch::leak::{LeakMode, Registry, ENV_VAR};

#[test]
fn env_var_sets_the_global_mode_and_rejects_unknown_values() {
    std::env::remove_var(ENV_VAR);
    assert_eq!(LeakMode::from_env(), Ok(LeakMode::Off));

    std::env::set_var(ENV_VAR, "sometimes");
    let err = LeakMode::from_env().unwrap_err();
    assert_eq!(err.value(), "sometimes");
    assert!(err.to_string().contains(ENV_VAR), "{err}");

    std::env::set_var(ENV_VAR, "panic");
    assert_eq!(LeakMode::from_env(), Ok(LeakMode::Panic));

    // The global registry reads the variable once, on first use.
    std::env::set_var(ENV_VAR, "warn");
    let global = Registry::global();
    assert_eq!(global.mode(), LeakMode::Warn);
    let leaked: Counted<Vec<u8>> = Counted::new(vec![1]);
    let report = global.check();
    assert_eq!(report.total, 1);
    assert_eq!(report.by_type.get("alloc::vec::Vec<u8>"), Some(&1));
    drop(leaked);
    assert!(global.check().is_empty());
}
