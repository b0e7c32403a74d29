"""Tests of check-kubernetes.py: the repository's manifests pass, and copies broken one way at a
time fail with a line that names the problem.

Run from the repository root:  python3 -m unittest discover -s scripts -p 'test_*.py'

The schema tests need kubernetes-validate (pip install kubernetes-validate; .ci/run installs
it); without it they are skipped, unless CI=true.
"""

import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "check-kubernetes.py")
MANIFESTS = os.path.join(os.path.dirname(HERE), "deploy", "kubernetes")
spec = importlib.util.spec_from_file_location("check_kubernetes", SCRIPT)
ck = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ck)


def need_packages(test):
    """Skips `test` where PyYAML or kubernetes-validate is missing, except under CI=true."""
    if (ck.yaml is None or ck.kubernetes_validate is None) and not ck.ci():
        return unittest.skip("kubernetes-validate is not installed")(test)
    return test


class CheckKubernetesTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = os.path.join(tmp.name, "kubernetes")
        shutil.copytree(MANIFESTS, self.dir)

    def edit(self, name, old, new):
        path = os.path.join(self.dir, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn(old, text, f"{name} no longer holds {old!r}: update the test")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new, 1))

    def check(self, *extra):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = ck.main([self.dir, "--no-kubectl", *extra])
        return code, out.getvalue()

    def assert_fails(self, *needles):
        code, out = self.check()
        self.assertEqual(code, 1, out)
        for needle in needles:
            self.assertIn(needle, out)
        return out

    @need_packages
    def test_the_repository_manifests_pass(self):
        code, out = self.check()
        self.assertEqual(code, 0, out)
        self.assertIn("valid against the Kubernetes API schema", out)
        self.assertIn("2 workers in an Indexed Job", out)

    @unittest.skipIf(shutil.which("kubectl") is None, "kubectl is not installed")
    def test_kubectl_renders_what_the_files_hold(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = ck.main([self.dir])
        self.assertEqual(code, 0 if ck.kubernetes_validate else code, out.getvalue())
        if ck.kubernetes_validate is not None:
            self.assertIn("kubectl kustomize renders the same objects", out.getvalue())

    def test_a_worker_job_that_is_not_indexed_fails(self):
        # The schema types completionMode as a string: only the script's own check sees this.
        self.edit("worker-job.yaml", "completionMode: Indexed", "completionMode: Sideways")
        self.assert_fails("spec.completionMode is 'Sideways', not 'Indexed'")

    def test_parallelism_other_than_completions_fails(self):
        self.edit("worker-job.yaml", "  parallelism: 2", "  parallelism: 1")
        self.assert_fails("spec.parallelism 1 is not spec.completions 2")

    def test_completions_other_than_the_coordinators_workers_fail(self):
        self.edit("coordinator-job.yaml", "--workers 2", "--workers 3")
        self.assert_fails("spec.completions 2 is not the coordinator's --workers 3")

    def test_a_service_port_other_than_the_coordinators_fails(self):
        self.edit("coordinator-job.yaml", "--port 8080", "--port 9090")
        out = self.assert_fails("not the coordinator's --port 9090")
        self.assertIn("no containerPort 9090", out)

    def test_a_service_target_port_other_than_the_coordinators_fails(self):
        self.edit("coordinator-service.yaml", "targetPort: control", "targetPort: 9000")
        self.assert_fails("targets 9000 (container port 9000), not the coordinator's --port 8080")

    def test_requests_other_than_limits_fail(self):
        self.edit("worker-job.yaml", "memory: 1Gi", "memory: 768Mi")
        self.assert_fails("container worker: memory request 768Mi is not its limit 1Gi")

    def test_equal_quantities_in_other_units_are_equal(self):
        # The request only: "3000m" against a limit of "3".
        self.edit("worker-job.yaml", 'cpu: "3"', "cpu: 3000m")
        code, out = self.check()
        self.assertEqual(code, 1 if ck.ci() and ck.kubernetes_validate is None else 0, out)
        self.assertNotIn("is not its limit", out)

    def test_fractional_cpus_fail(self):
        self.edit("coordinator-job.yaml", 'cpu: "1"', 'cpu: 500m')
        self.edit("coordinator-job.yaml", 'cpu: "1"', 'cpu: 500m')
        self.assert_fails("cpu 500m is not a whole number of CPUs")

    def test_shm_not_in_memory_fails(self):
        self.edit("worker-job.yaml", "medium: Memory", 'medium: ""')
        self.assert_fails("is not an emptyDir with medium: Memory")

    def test_a_restarted_worker_is_refused_so_backoff_must_be_zero(self):
        self.edit("worker-job.yaml", "  backoffLimit: 0", "  backoffLimit: 2")
        self.assert_fails("spec.backoffLimit is 2, not 0")

    def test_a_token_from_an_undefined_secret_key_fails(self):
        self.edit("worker-job.yaml", "key: token", "key: tokn")
        self.assert_fails("Secret alphapulse-token key tokn, which these files do not define")

    def test_a_transforming_kustomization_is_refused(self):
        with open(os.path.join(self.dir, "kustomization.yaml"), "a", encoding="utf-8") as f:
            f.write("namePrefix: test-\n")
        self.assert_fails("namePrefix: only `resources` is allowed")

    @need_packages
    def test_an_unknown_field_fails_the_schema(self):
        self.edit("worker-job.yaml", "  backoffLimit: 0", "  backoffLimit: 0\n  backofLimit: 0")
        self.assert_fails("'backofLimit' was unexpected")

    @need_packages
    def test_a_wrong_type_fails_the_schema(self):
        self.edit("coordinator-service.yaml", "port: 8080", "port: eighty")
        self.assert_fails("Service/alphapulse-coordinator: spec.ports.0.port: 'eighty' is not of "
                          "type 'integer'")


class MissingPackageTest(unittest.TestCase):
    def run_without_package(self, ci):
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        if ci:
            env["CI"] = "true"
        code = ("import runpy, sys; sys.modules['kubernetes_validate'] = None; "
                f"sys.argv = [{SCRIPT!r}, '--no-kubectl']; "
                f"runpy.run_path({SCRIPT!r}, run_name='__main__')")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=120)

    def test_skipped_without_the_package(self):
        r = self.run_without_package(ci=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(r.stdout.startswith("SKIPPED: "), r.stdout)

    def test_fails_without_the_package_in_ci(self):
        r = self.run_without_package(ci=True)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("kubernetes-validate is not installed", r.stdout)
        self.assertIn("CI=true", r.stdout)


if __name__ == "__main__":
    unittest.main()
