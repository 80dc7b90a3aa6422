//! Bounded fuzzing runs of each target (see `src/lib.rs`).

use std::time::Duration;

fn time() -> Duration {
    let secs = std::env::var("QCI_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

#[test]
fn spec() {
    bolero::check!()
        .with_test_time(time())
        .for_each(|data: &[u8]| qci_fuzz::spec(data));
}

#[test]
fn quantity() {
    bolero::check!()
        .with_test_time(time())
        .for_each(|data: &[u8]| qci_fuzz::quantity(data));
}

#[test]
fn firewall_rule() {
    bolero::check!()
        .with_test_time(time())
        .for_each(|data: &[u8]| qci_fuzz::firewall_rule(data));
}

#[test]
fn layer() {
    bolero::check!()
        .with_test_time(time())
        .for_each(|data: &[u8]| qci_fuzz::layer(data));
}

#[test]
fn spec_tokens() {
    bolero::check!()
        .with_test_time(time())
        .for_each(|data: &[u8]| qci_fuzz::spec_tokens(data));
}

#[test]
fn firewall_tokens() {
    bolero::check!()
        .with_test_time(time())
        .for_each(|data: &[u8]| qci_fuzz::firewall_tokens(data));
}

#[test]
fn layer_entries() {
    bolero::check!()
        .with_test_time(time())
        .for_each(|data: &[u8]| qci_fuzz::layer_entries(data));
}
