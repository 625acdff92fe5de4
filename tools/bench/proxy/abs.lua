-- wrk sends to the proxy's address; absolute-form requests, as a client of a forward proxy does
wrk.path = os.getenv("ABS_URL") or "http://127.0.0.1:48080/"
wrk.headers["Host"] = os.getenv("ABS_HOST") or "127.0.0.1:48080"
