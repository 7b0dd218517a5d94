"""Document stores behind the mongo sink: MongoDB (and its wire-compatible servers) and the embedded one."""
