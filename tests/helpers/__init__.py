"""What the tests share that is not a fixture: waiting, sample events, service clients and processes."""
