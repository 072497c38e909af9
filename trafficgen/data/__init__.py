"""trafficgen.data"""
