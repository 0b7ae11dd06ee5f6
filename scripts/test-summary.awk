# The closing line of `make test`: "P passed, F failed, S skipped" over an XCTest log (swift test output).
# XCTest prints one "Executed N tests, with …" line per test class, one per bundle and a total, the one after
# "Test Suite 'All tests' passed|failed" ('Selected tests' with --filter): N and the skipped count S come from that
# line only ("Executed 5 tests, with 1 test skipped and 2 failures"); a log without it did not finish.
# Its failure count counts assertions, not tests, so F counts the "Test Case '…' failed" lines instead; P = N − S − F.
# Fixtures: scripts/test-summary-samples/ (checked by Tests/ClusterTests/TestSummaryTests.swift).
/^Test Case '.*' failed/ { failed++ }
/^Test Suite '(All tests|Selected tests)' (passed|failed)/ { closing = 1; next }
closing && /Executed [0-9]+ tests?, with / { total = $0; closing = 0 }
END {
    if (total == "") { print "no XCTest summary: the suite did not finish (crashed or stopped)"; exit 1 }
    n = total; sub(/.*Executed /, "", n); n += 0
    s = 0
    if (match(total, /[0-9]+ tests? skipped/)) s = substr(total, RSTART, RLENGTH) + 0
    printf "%d passed, %d failed, %d skipped\n", n - s - failed, failed, s
}
