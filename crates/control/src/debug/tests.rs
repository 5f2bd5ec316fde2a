use super::*;

#[test]
fn query_params_are_found_and_decoded() {
    assert_eq!(
        query_param("proxy=a.prod", "proxy").as_deref(),
        Some("a.prod")
    );
    assert_eq!(
        query_param("x=1&proxy=a%2Eprod&proxy=b", "proxy").as_deref(),
        Some("a.prod")
    );
    assert_eq!(query_param("proxy", "proxy").as_deref(), Some(""));
    assert_eq!(query_param("other=1", "proxy"), None);
    assert_eq!(percent_decode("a+b%20c%zz%4"), "a b c%zz%4");
}
