"""URLs built from names: escaped, and never from a name that is not a Kubernetes name."""

import pytest

from odoo_operator.kube import KubeError, _path


def test_paths_of_valid_names():
    assert _path("v1", "Secret", "shop-db", "team-a") == "/api/v1/namespaces/team-a/secrets/shop-db"
    assert _path("odoo.dbmanager.io/v1alpha1", "DatabaseBackup", "a.b", "ns", "status") == \
        "/apis/odoo.dbmanager.io/v1alpha1/namespaces/ns/databasebackups/a.b/status"
    assert _path("batch/v1", "Job", None, "ns") == "/apis/batch/v1/namespaces/ns/jobs"


@pytest.mark.parametrize("name", ["../../kube-system/secrets/admin", "..", ".", "a/b", "a%2Fb", "A", "", "a?b",
                                  "a#b", "x" * 254, "a\n"])
def test_a_name_that_would_leave_its_collection_is_refused(name):
    with pytest.raises(KubeError, match="not a valid Kubernetes name"):
        _path("v1", "Secret", name, "ns")
    if name:
        with pytest.raises(KubeError, match="not a valid Kubernetes name"):
            _path("v1", "Secret", "s", name)
