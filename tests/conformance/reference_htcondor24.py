"""Run inside a throwaway venv with htcondor 24: print what its legacy Submit.jobs() makes of each file.

Usage: python reference_htcondor24.py FILE...   (run with the corpus directory as cwd)
Prints one JSON object: file name -> {"ads": [{attr: expression text}]} or {"error": message}.
"""

import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import htcondor  # noqa: E402

out = {}
for path in sys.argv[1:]:
    name = os.path.basename(path)
    try:
        with open(path) as handle:
            submit = htcondor.Submit(handle.read())
        ads = list(submit.jobs(clusterid=1, qdate=1000, owner="conformance"))
        out[name] = {"ads": [{key: str(ad.lookup(key)) for key in ad} for ad in ads]}
    except Exception as exc:  # the error is part of the reference
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out))
