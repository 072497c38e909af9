"""trafficgen.representations"""
