//! Finds the test data (models, audio) outside the repository: `$SAMTAL_TEST_DATA`, else `<repo>/../shared`.
//! Must never skip silently: a missing file fails the test and says how to get it.

use std::path::PathBuf;

pub fn test_data(relative: &str) -> PathBuf {
    let root = std::env::var_os("SAMTAL_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    let path = root.join(relative);
    assert!(
        path.is_file(),
        "test data missing: {} (looked in SAMTAL_TEST_DATA or <repo>/../shared). \
         Run scripts/fetch-test-data.sh on a machine with internet, or set SAMTAL_TEST_DATA to its folder.",
        path.display()
    );
    path
}
