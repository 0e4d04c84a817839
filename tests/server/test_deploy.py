"""deploy/*.yaml against the Kubernetes schemas bundled with kubernetes-validate (offline),
strictly (unknown fields are errors), and the wiring between them: the probes hit the server's
/ready and /health, the drain fits the grace period, the HPA scales on the metric /metrics exports."""
import os
import subprocess
import sys
import unittest

import yaml  # a kubernetes-validate dependency

DEPLOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy")
FILES = sorted(os.path.join(DEPLOY, f) for f in os.listdir(DEPLOY) if f.endswith(".yaml"))


class Deploy(unittest.TestCase):
    def test_schemas(self):
        self.assertGreaterEqual(len(FILES), 3)
        r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "kubernetes-validate"), "--strict",
                            "-k", "1.33.0", *FILES], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_wiring(self):
        docs = {}
        for f in FILES:
            with open(f) as fh:
                for d in yaml.safe_load_all(fh):
                    docs[d["kind"]] = d
        dep, svc, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/ready")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/health")
        args = c["args"]
        self.assertEqual(args[0], "serve")
        drain = int(args[args.index("--drain") + 1])
        self.assertLess(drain + c["lifecycle"]["preStop"]["sleep"]["seconds"], pod["terminationGracePeriodSeconds"])
        self.assertEqual(svc["spec"]["sessionAffinity"], "ClientIP")
        self.assertEqual(svc["spec"]["selector"], dep["spec"]["selector"]["matchLabels"])
        self.assertEqual(hpa["spec"]["metrics"][0]["pods"]["metric"]["name"], "voxrt_sessions_active")
        slots = int(args[args.index("--max-sessions") + 1])
        self.assertLess(float(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"]), slots)


if __name__ == "__main__":
    unittest.main(verbosity=2)
