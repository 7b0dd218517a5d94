"""Moving from Spring Cloud Data Flow: SCDF's stream exports read and mapped to tuneflow's apps, and written back.

`apps` holds the table of SCDF's out-of-the-box apps and their counterparts, `mapping` maps one stream, `files` reads
and writes export files, `importer` plans and creates the streams of an export.
"""
