"""Check lines for the suites' Python clients (scripts/interop/, scripts/tls/): each check
prints one line that the suite's run.sh counts as a pass or a failure, and the client exits
1 if any failed. Imported by putting this folder on sys.path."""
import sys


class Checks:
    """Call with (ok, text, detail=None): prints PASSED or FAILED then text; a failure's
    detail follows as "#   " comment lines. `failed` says whether any check failed."""

    def __init__(self, passed="ok   ", failed="FAIL "):
        self.passed_prefix = passed
        self.failed_prefix = failed
        self.failed = False

    def __call__(self, ok, text, detail=None):
        print((self.passed_prefix if ok else self.failed_prefix) + text)
        sys.stdout.flush()
        if not ok:
            self.failed = True
            if detail is not None:
                for line in str(detail).splitlines():
                    print("#   " + line)

    def exit(self):
        """Ends the client: status 1 if any check failed, else 0."""
        sys.exit(1 if self.failed else 0)
