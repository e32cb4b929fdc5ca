/*
 * Stands in for a libksock newer than the one under test: it is linked with
 * the soname libksock.so.0 and exports one function in the symbol version
 * KSOCK_1.99 (future_stub.map). The `newer_symbols` fixture imports it, so
 * at run time, against the real libksock, the dynamic loader refuses that
 * fixture, and the plugin loader must say why in its own words.
 */
int ksock_fixture_future_fn(void);

__attribute__((visibility("default"))) int ksock_fixture_future_fn(void)
{
    return 0;
}
