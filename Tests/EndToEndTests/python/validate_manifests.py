"""Validates every zoo manifest against Manifests/schema.json with the jsonschema package."""
import json
import os
import sys

import jsonschema

folder = sys.argv[1]
schema = json.load(open(os.path.join(folder, "schema.json")))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
count = 0
for name in sorted(os.listdir(folder)):
    if not name.endswith(".json") or name == "schema.json":
        continue
    errors = list(validator.iter_errors(json.load(open(os.path.join(folder, name)))))
    for e in errors:
        print("%s: %s at %s" % (name, e.message, "/".join(map(str, e.path))))
    if errors:
        sys.exit(1)
    count += 1
print("valid", count)
