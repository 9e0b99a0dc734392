"""superglue-benchmark --node: a node process fed 30 Hz VGA frames over DDS by the camera player
of the benchmark, with ORB on a few seconds of frames: it runs and writes its JSON (no timing is
asserted; the numbers belong in the README's Performance section)."""
import json

from superglue_ros.ros import node_benchmark


def test_node_benchmark_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / 'node.json'
    log = tmp_path / 'node.log'
    rc = node_benchmark.cli(['--node', '--preset', 'orb', '--warmup', '2', '--duration', '3', '--drain', '1',
                         '--param', 'debug_image:=never', '--output', str(out), '--node-log', str(log)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res['input']['width'] == 640 and res['input']['height'] == 480
    assert res['input']['encoding'] == 'mono8' and res['input']['qos'] == 'sensor_data'
    assert res['input']['rate_hz'] == 30.0 and res['input']['camera_info']
    assert 0 < res['processed'] <= res['published']
    assert res['latency_ms']['p90'] >= res['latency_ms']['p50'] > 0
    assert 0 < res['delivered'] <= 1.0
    node = res['node']   # the node's own diagnostics: per-worker timings and loop job counts
    assert node['extractor'] == 'orb' and node['frames_processed'] >= res['processed']
    assert {'odometry_worker_p50_ms', 'loop_worker_p50_ms', 'loop_jobs_done', 'loop_jobs_dropped',
            'latency_p50_ms'} <= set(node)
    assert res['rss_mib']['start'] > 0 and res['rss_mib']['max'] >= res['rss_mib']['end'] > 0
    assert 'processed' in capsys.readouterr().out and 'ready' in log.read_text()
