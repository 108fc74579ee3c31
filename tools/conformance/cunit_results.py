"""Turns iscsi-test-cu (CUnit) output of one suite into "FAMILY.SUITE.TEST pass|skip|fail" lines."""
import re
import sys

suite = sys.argv[1]
text = sys.stdin.read()
# Each test starts with "  Test: NAME ..." and ends with a line that is "passed" or "FAILED",
# possibly after the test's own log lines.
for m in re.finditer(r"^  Test: (\S+) \.\.\.(.*?)(passed|FAILED)\s*$", text, re.S | re.M):
    name, body, verdict = m.group(1), m.group(2), m.group(3)
    if verdict == "FAILED":
        result = "fail"
    elif "[SKIPPED]" in body:
        result = "skip"
    else:
        result = "pass"
    print(f"{suite}.{name} {result}")
