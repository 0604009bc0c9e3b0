use super::*;

#[test]
fn placeholder_normalizes_root() {
    assert_eq!(normalize_path("/").unwrap(), "/");
}
