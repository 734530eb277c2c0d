"""Parser tests run on stored outputs of real runs, one folder per case under ``fixtures/<plugin>/<case>``; the
shared ``generate_calc_job_node`` (:mod:`aiida_qrnn.testing.fixtures`) makes a finished job of one."""
