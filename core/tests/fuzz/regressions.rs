//! Every input the fuzz targets found failing, as a named test: the class of
//! the failure in the name, the shrunk input as found, and whether it was a
//! bug (fixed, with its commit) or a property stated too broadly.

use edge_auth_core::policy::path::normalize;

use super::path;

/// path, found by the first bounded run (`b"/?\x81"`): a byte that is not
/// UTF-8 in the query becomes U+FFFD in the shell's lossy reading, and the
/// target is accepted. Not a bug: the query goes upstream as sent and is
/// never examined (docs 4.1), and a token read from it must be base64url.
/// The property now requires the path part, not the whole target, to be
/// valid UTF-8; a path part that is not is refused.
#[test]
fn a_query_that_is_not_utf8_is_not_examined_but_such_a_path_is_refused() {
    assert!(path::check(b"/?\x81").is_ok());
    let lossy = String::from_utf8_lossy(b"/?\x81");
    assert_eq!(normalize(&lossy).unwrap().query, Some("\u{fffd}"));
    assert!(normalize(&String::from_utf8_lossy(b"/a\x81")).is_err());
    assert!(normalize(&String::from_utf8_lossy(b"/\xc0\xae\xc0\xae/admin")).is_err());
}
