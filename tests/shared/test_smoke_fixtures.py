import redis
from sqlalchemy import create_engine, inspect


def test_db_url_has_schema(db_url: str) -> None:
    engine = create_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"sweeps", "runs", "metrics", "latest_metrics", "api_tokens"} <= tables


def test_broker_is_a_real_flushed_redis(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    assert client.ping()
    assert client.dbsize() == 0
