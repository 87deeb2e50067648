//! Tells rustdoc whether this build of refwatch is model-checked.
//!
//! Under `RUSTFLAGS="--cfg loom"` (or `shuttle`) every primitive in `refwatch::sync` is the
//! checker's and works only inside a model, so the doctests and the README's examples, which
//! run outside any model, must not run. RUSTFLAGS reaches rustc but not rustdoc; a cfg set here
//! reaches both, so the crate can leave the README's doctests out of such builds.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let checked = ["CARGO_CFG_LOOM", "CARGO_CFG_SHUTTLE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if checked {
        println!("cargo:rustc-cfg=refwatch_model_checked");
    }
}
