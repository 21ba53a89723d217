"""Grafana provisioning files (apiVersion 1): the InfluxDB data source and the file provider for the dashboards.

Secrets never land in the files: Grafana expands ${GKJK_INFLUX_PASSWORD} / ${GKJK_INFLUX_TOKEN} from its own
environment when it reads them, so the generated files can be committed.
"""

from __future__ import annotations

from typing import Any

from gkjk.config import InfluxConfig
from gkjk.grafana.influxql import DATASOURCE

DATASOURCE_NAME = "工况监控 InfluxDB"
FOLDER = "工况监控"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/gkjk"


def datasource(influx: InfluxConfig) -> dict[str, Any]:
    """InfluxQL data source with the fixed uid every dashboard refers to.

    1.x: database and optional basic auth. 2.x and 3.x: InfluxQL through their v1-compatible /query endpoint, the
    database mapped to a bucket (DBRP), the token in an Authorization header.
    """
    json_data: dict[str, Any] = {"version": "InfluxQL", "dbName": influx.database, "httpMode": "POST",
                                 "timeInterval": "1m"}
    source: dict[str, Any] = {"name": DATASOURCE_NAME, "uid": DATASOURCE["uid"], "type": DATASOURCE["type"],
                              "access": "proxy", "url": influx.url, "isDefault": True, "editable": False,
                              "jsonData": json_data}
    if influx.api == "v1":
        if influx.username:
            source["user"] = influx.username
            source["secureJsonData"] = {"password": "${GKJK_INFLUX_PASSWORD}"}
    else:
        json_data["httpHeaderName1"] = "Authorization"
        source["secureJsonData"] = {"httpHeaderValue1": "Token ${GKJK_INFLUX_TOKEN}"}
    return {"apiVersion": 1, "datasources": [source]}


def dashboard_provider(path: str = DASHBOARDS_PATH) -> dict[str, Any]:
    """File provider: Grafana loads every JSON file under `path` (where dashboards/ is mounted) into one folder.

    Edits in the UI are refused: the files are generated, a change belongs in the generator.
    """
    return {"apiVersion": 1, "providers": [{
        "name": "gkjk", "orgId": 1, "folder": FOLDER, "folderUid": "gkjk", "type": "file",
        "disableDeletion": True, "allowUiUpdates": False, "updateIntervalSeconds": 60,
        "options": {"path": path, "foldersFromFilesStructure": False},
    }]}
