from userpool.matchsub import expand


def test_dollar_dollar_expansion() -> None:
    job = {
        "Arguments": '"--site $$(GLIDEIN_Site) --mem $$(Memory)"',
        "Fallback": '"$$(Missing:none)"',
        "Computed": '"$$([Memory * 2])"',
        "Quoted": '"<$$(Weird)>"',
        "Plain": "3",
    }
    slot = {"GLIDEIN_Site": '"UCSD"', "memory": "2048", "Weird": '"a\\"b"'}
    expanded, recorded = expand(job, slot)
    assert expanded["Arguments"] == '"--site UCSD --mem 2048"'
    assert expanded["Fallback"] == '"none"' and expanded["Computed"] == '"4096"'
    assert expanded["Quoted"] == '"<a\\"b>"' and expanded["Plain"] == "3"
    assert recorded == {"MATCH_GLIDEIN_Site": '"UCSD"', "MATCH_Memory": "2048", "MATCH_Weird": '"a\\"b"'}
