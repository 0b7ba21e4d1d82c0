"""GrowthBook's own SDK as an oracle for modelgate's `growthbook` hash scheme.

Reads one JSON object per line on stdin:
  {"seed": str, "weights": [float], "coverage": float,
   "namespace": [name, start, end] | null, "keys": [str]}
and writes one JSON object per line: {"results": [[in_experiment, variation, bucket], ...]}
where bucket is GrowthBook's hash value (None when not in the experiment, as the SDK gives).
"""
import json
import sys

from growthbook import Experiment, GrowthBook


def main():
    for line in sys.stdin:
        case = json.loads(line)
        namespace = tuple(case["namespace"]) if case.get("namespace") else None
        results = []
        for key in case["keys"]:
            gb = GrowthBook(attributes={"id": key})
            r = gb.run(
                Experiment(
                    key="oracle",
                    variations=list(range(len(case["weights"]))),
                    weights=case["weights"],
                    coverage=case["coverage"],
                    seed=case["seed"],
                    hashVersion=2,
                    namespace=namespace,
                )
            )
            results.append([bool(r.inExperiment), int(r.variationId), r.bucket])
        sys.stdout.write(json.dumps({"results": results}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
