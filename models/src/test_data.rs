//! Where the test data (model files, real speech) lies for tests and benchmarks: outside the
//! repository, in `$SAMTAL_TEST_DATA`, else the repository's sibling folder `shared/`.

use std::path::PathBuf;

/// The test data folder: `$SAMTAL_TEST_DATA`, else `<repo>/../shared`.
pub fn test_data_dir() -> PathBuf {
    std::env::var_os("SAMTAL_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")))
}

/// `<test data>/<relative>`. Panics, saying how to get it, if the file is not there: a test must
/// never skip silently for missing data.
pub fn test_data(relative: &str) -> PathBuf {
    let path = test_data_dir().join(relative);
    assert!(
        path.is_file(),
        "test data missing: {} (looked in SAMTAL_TEST_DATA or <repo>/../shared). \
         Run scripts/fetch-test-data.sh on a machine with internet, or set SAMTAL_TEST_DATA to its folder.",
        path.display()
    );
    path
}
