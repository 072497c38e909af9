"""trafficgen.evaluation"""
