"""A tiny TAP producer for Python end-to-end tests (no third-party runner).

    t = Tap()
    @t.test
    def starts_and_stops(): ...
    t.run()

Each test is a function; an exception fails it with the traceback as TAP
comments. t.skip("why") inside a test marks it skipped.
"""
import sys
import traceback


class Skip(Exception):
    pass


class Tap:
    def __init__(self):
        self.tests = []

    def test(self, fn):
        self.tests.append(fn)
        return fn

    @staticmethod
    def skip(why):
        raise Skip(why)

    def run(self):
        only = sys.argv[2:] if len(sys.argv) > 2 else None
        tests = [t for t in self.tests if not only or t.__name__ in only]
        print(f"1..{len(tests)}", flush=True)
        failed = 0
        for i, fn in enumerate(tests, 1):
            try:
                fn()
                print(f"ok {i} - {fn.__name__}", flush=True)
            except Skip as s:
                print(f"ok {i} - {fn.__name__} # SKIP {s}", flush=True)
            except BaseException:  # noqa: BLE001 - a test failure of any kind
                failed += 1
                for line in traceback.format_exc().splitlines():
                    print(f"# {line}")
                print(f"not ok {i} - {fn.__name__}", flush=True)
        sys.exit(1 if failed else 0)
