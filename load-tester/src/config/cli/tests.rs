use super::*;
use clap::CommandFactory;

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn whole_numbers_are_range_checked() {
    assert_eq!(whole("10_000", 0, 20_000), Ok(10_000));
    assert!(whole("-5", 0, 10).is_err());
    assert!(whole("abc", 0, 10).is_err());
    assert!(whole("99999999999999999999999", 0, u64::MAX).is_err());
    assert!(whole("11", 0, 10).is_err());
}
