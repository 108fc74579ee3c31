"""Per-suite table (pass / skip / fail per target) from iscsi-suites.sh result files."""
import collections
import os
import sys

results = {}
for path in sys.argv[1:]:
    name = os.path.splitext(os.path.basename(path))[0]
    per = collections.OrderedDict()
    for line in open(path):
        test, result = line.split()
        suite = test.split(".")[0] + "." + test.split(".")[1]
        per.setdefault(suite, collections.Counter())[result] += 1
    results[name] = per
names = list(results)
suites = []
for n in names:
    for s in results[n]:
        if s not in suites:
            suites.append(s)
print("| suite | " + " | ".join(f"{n} pass / skip / fail" for n in names) + " |")
print("|---|" + "---|" * len(names))
totals = {n: collections.Counter() for n in names}
for s in suites:
    cells = []
    for n in names:
        c = results[n].get(s, collections.Counter())
        totals[n].update(c)
        t = " (timeout)" if c["timeout"] else ""
        cells.append(f"{c['pass']} / {c['skip']} / {c['fail']}{t}")
    print(f"| {s} | " + " | ".join(cells) + " |")
print("| **total** | " + " | ".join(f"**{totals[n]['pass']} / {totals[n]['skip']} / {totals[n]['fail']}**" for n in names) + " |")
