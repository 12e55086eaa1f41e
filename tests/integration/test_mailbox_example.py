"""examples/mailbox/run --quick, as a user runs it: exit 0, every log-driven store equal to
PostgreSQL, and the dual writes' drift reported."""

import os
import subprocess
import unittest

from ordo_harness import ORDO_BIN

HERE = os.path.dirname(os.path.abspath(__file__))


class MailboxExampleTest(unittest.TestCase):
    def test_runs_and_the_derived_stores_equal_postgres(self):
        build_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(ORDO_BIN))))
        r = subprocess.run([os.path.join(HERE, "..", "..", "examples", "mailbox", "run"),
                            "--build-dir", build_dir, "--quick"],
                           capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for store in ("unread counts", "search index", "mailbox cache"):
            self.assertRegex(r.stdout, rf"{store}\s+equal to PostgreSQL")
        self.assertRegex(r.stdout, r"unread counters off in \d+ of 8 mailboxes")
        self.assertIn("the log-driven stores above stayed equal: yes", r.stdout)


if __name__ == "__main__":
    unittest.main()
