"""convostore benchmark suite: the store next to hand-written SQL and the alternatives.

    python -m benchmarks --backend all            # W1..W6 on SQLite and PostgreSQL
    python -m benchmarks --quick                  # a fast, smaller run
    python -m benchmarks --scale                  # W4/W5 as the data grows to 1M rows

Every workload runs, in one process and one run, on convostore's ``Store``, ``AsyncStore``,
a raw-driver baseline (psycopg 3 / stdlib ``sqlite3`` with hand-written SQL on the schema the
shipped migrations create) and, when installed, LangChain's ``PostgresChatMessageHistory``
and the OpenAI Agents SDK ``SQLAlchemySession``. Every timed read is checked for count,
content and order, so a fast wrong answer cannot win.
"""
