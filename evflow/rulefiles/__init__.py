"""rulefiles"""
